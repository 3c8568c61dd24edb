package dev.quill;

import java.util.Arrays;

/** One generated sequence. */
public final class Hypothesis {
    /** The generated token ids (not the input, not the decoder start id). */
    public final int[] ids;
    /** Their text; null for a generation from ids. */
    public final String text;
    /** Sum of log-probabilities (length-normalized under beam search). */
    public final float score;

    Hypothesis(int[] ids, String text, float score) {
        this.ids = ids;
        this.text = text;
        this.score = score;
    }

    @Override
    public String toString() {
        return "Hypothesis{ids=" + Arrays.toString(ids) + ", text=" + text + ", score=" + score + "}";
    }
}
