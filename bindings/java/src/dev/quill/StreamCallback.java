package dev.quill;

/**
 * Receives the final tokens of a generation as they come, on the generating thread.
 *
 * <p>An exception it throws stops the generation; the generating call then throws it (after
 * freeing everything). Inside the callback, the session may only be {@link Session#cancel()
 * cancelled}; other calls on it throw {@link IllegalStateException}.
 */
@FunctionalInterface
public interface StreamCallback {
    /**
     * @param input the index of the input these tokens belong to
     * @param ids the new final tokens (empty for the last piece of held-back text)
     * @param text the text they add (possibly empty; the pieces of an input add up to its result's
     *     text), or null for a generation from ids
     * @return true to go on, false to stop (the result is then marked stopped)
     */
    boolean onTokens(int input, int[] ids, String text);
}
