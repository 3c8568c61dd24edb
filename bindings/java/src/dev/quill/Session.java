package dev.quill;

/**
 * A session ({@code quill_session}): the KV cache and scratch memory of one user of a model. One
 * thread at a time: calls are serialized (a second thread waits), except {@link #cancel()}, which
 * any thread may call at any time. Inside a {@link StreamCallback} only {@code cancel()} may be
 * called on the session that is generating. Close it when done (try-with-resources).
 */
public final class Session implements AutoCloseable {
    private long handle; // guarded by this
    private boolean busy; // guarded by this: a native call runs (on the thread holding the monitor)
    private final Object cancelLock = new Object();
    private long cancelHandle; // guarded by cancelLock; 0 once freed

    Session(long handle) {
        synchronized (cancelLock) {
            cancelHandle = handle;
        }
        synchronized (this) {
            this.handle = handle;
        }
    }

    /** Marks the session busy and returns its handle; the caller holds the monitor. */
    private long enter() {
        if (handle == 0) throw new IllegalStateException("the session is closed");
        if (busy) {
            throw new IllegalStateException("the session is generating: a stream callback may only cancel() it");
        }
        busy = true;
        return handle;
    }

    /** Generates from texts with the model's own decoding defaults (lowered to the session). */
    public Generation generate(String... texts) {
        return generate(null, null, texts);
    }

    /** Generates from texts; {@code options} null: the model's defaults. */
    public Generation generate(GenerateOptions options, String... texts) {
        return generate(options, null, texts);
    }

    /**
     * Generates from a batch of texts (at most the session's maxBatch), streaming final tokens to
     * {@code callback} (null: no streaming).
     */
    public synchronized Generation generate(GenerateOptions options, StreamCallback callback, String... texts) {
        if (texts == null) throw new NullPointerException("texts");
        long h = enter();
        try {
            return Native.generateText(h, texts, options == null ? null : options.pack(), callback);
        } finally {
            busy = false;
        }
    }

    /** Generates from token-id sequences (hypotheses without text). */
    public Generation generateIds(GenerateOptions options, int[]... inputs) {
        return generateIds(options, null, inputs);
    }

    /** Generates from token-id sequences, streaming final tokens to {@code callback} (text null). */
    public synchronized Generation generateIds(GenerateOptions options, StreamCallback callback, int[]... inputs) {
        if (inputs == null) throw new NullPointerException("inputs");
        long h = enter();
        try {
            return Native.generateIds(h, inputs, options == null ? null : options.pack(), callback);
        } finally {
            busy = false;
        }
    }

    /** Generates from one text, streaming its final tokens and their text to {@code callback}. */
    public Generation stream(String text, GenerateOptions options, StreamCallback callback) {
        if (callback == null) throw new NullPointerException("callback");
        return generate(options, callback, text);
    }

    /**
     * Adds a message with {@code role} ("system", "user", "assistant") to the conversation the
     * session keeps, without generating: a system prompt before the first turn, or earlier turns
     * to continue from. The model needs a chat template ({@link QuillException} otherwise).
     */
    public synchronized void chatAdd(String role, String content) {
        if (role == null) throw new NullPointerException("role");
        if (content == null) throw new NullPointerException("content");
        long h = enter();
        try {
            Native.chatAdd(h, role, content);
        } finally {
            busy = false;
        }
    }

    /** One turn of a conversation with a decoder-only model, with the model's defaults (one beam). */
    public Generation chat(String message) {
        return chat(message, null, null);
    }

    /**
     * One turn of a conversation with a decoder-only model: {@code message}, the user's (formatted
     * with the model's chat template when it has one, else given as it is), is added to the
     * conversation the session keeps, and the reply is
     * generated (greedy or sampling: beams must be 1), streamed to {@code callback} if not null.
     * The result has one input with one hypothesis, the reply. {@link #reset()} starts over.
     */
    public synchronized Generation chat(String message, GenerateOptions options, StreamCallback callback) {
        if (message == null) throw new NullPointerException("message");
        long h = enter();
        try {
            return Native.chat(h, message, options == null ? null : options.pack(), callback);
        } finally {
            busy = false;
        }
    }

    /** Forgets the conversation and the started sequences, and clears a pending cancel. */
    public synchronized void reset() {
        long h = enter();
        try {
            Native.sessionReset(h);
        } finally {
            busy = false;
        }
    }

    /** The limits the session was made with, each 0 replaced by what it fitted to the model. */
    public synchronized SessionOptions limits() {
        long h = enter();
        try {
            long[] v = new long[SessionOptions.PACKED_LEN];
            Native.sessionLimits(h, v);
            return new SessionOptions(v);
        } finally {
            busy = false;
        }
    }

    /**
     * Stops the generation running on this session within one decoding step; it returns what it
     * produced, marked {@link Generation#stopped}. Any thread, any time, also from a stream
     * callback. Made while no generation runs, it stops the next one as it starts (until
     * {@link #reset()}). Does nothing on a closed session.
     */
    public void cancel() {
        synchronized (cancelLock) {
            if (cancelHandle != 0) Native.sessionCancel(cancelHandle);
        }
    }

    /**
     * Frees the session. A generation running on another thread is cancelled and waited for.
     * Idempotent; not allowed from a stream callback of this session.
     */
    @Override
    public void close() {
        cancel();
        synchronized (this) {
            if (busy) throw new IllegalStateException("a stream callback may not close its own session");
            long h;
            synchronized (cancelLock) {
                h = handle;
                handle = 0;
                cancelHandle = 0;
            }
            if (h != 0) Native.sessionFree(h);
        }
    }
}
