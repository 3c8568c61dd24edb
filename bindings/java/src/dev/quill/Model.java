package dev.quill;

import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * An open model ({@code quill_model}): immutable and thread-safe — share one between threads and
 * give each thread its own {@link Session}. Close it when done (try-with-resources); sessions
 * made from it stay usable after it is closed.
 *
 * <pre>{@code
 * try (Model model = new Model("/path/en-de.quill");
 *      Session session = model.newSession()) {
 *     System.out.println(session.generate("Open the file").text());
 * }
 * }</pre>
 */
public final class Model implements AutoCloseable {
    /** Calls hold the read lock, close() the write lock: a model is never freed under a call. */
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private volatile long handle;

    /** Opens a model file with one worker thread per core. */
    public Model(String path) {
        this(path, 0, false);
    }

    /** Opens a model file with {@code threads} worker threads (0: one per core). */
    public Model(String path, int threads) {
        this(path, threads, false);
    }

    /**
     * Opens a model file.
     *
     * @param threads worker threads; 0: one per core; 1: none (everything runs on the calling
     *     thread, best for many sessions computing at once)
     * @param inMemory read the file into memory instead of mapping it (immune to the file being
     *     rewritten while open)
     * @throws QuillException e.g. status {@link QuillException#IO} for a file that cannot be read
     */
    public Model(String path, int threads, boolean inMemory) {
        if (path == null) throw new NullPointerException("path");
        if (threads < 0) throw new IllegalArgumentException("threads must be >= 0, not " + threads);
        handle = Native.modelOpen(path, threads, inMemory);
    }

    private long acquire() {
        lock.readLock().lock();
        long h = handle;
        if (h == 0) {
            lock.readLock().unlock();
            throw new IllegalStateException("the model is closed");
        }
        return h;
    }

    private void release() {
        lock.readLock().unlock();
    }

    /** What the model is. */
    public ModelInfo info() {
        long h = acquire();
        try {
            long[] v = new long[ModelInfo.FIELDS];
            String isa = Native.modelInfo(h, v);
            return new ModelInfo(v, isa, Native.modelEosIds(h));
        } finally {
            release();
        }
    }

    /** Text to ids with the model's (source) tokenizer, with its special tokens. */
    public int[] tokenize(String text) {
        return tokenize(text, true);
    }

    /**
     * Text to ids with the model's (source) tokenizer.
     *
     * @param addSpecial apply the tokenizer's post-processor (e.g. append end-of-sequence)
     */
    public int[] tokenize(String text, boolean addSpecial) {
        if (text == null) throw new NullPointerException("text");
        long h = acquire();
        try {
            return Native.tokenize(h, text, addSpecial, false);
        } finally {
            release();
        }
    }

    /** Text to ids with the target tokenizer (the decoder's vocabulary). */
    public int[] tokenizeTarget(String text, boolean addSpecial) {
        if (text == null) throw new NullPointerException("text");
        long h = acquire();
        try {
            return Native.tokenize(h, text, addSpecial, true);
        } finally {
            release();
        }
    }

    /** Ids to text (with the target tokenizer when the model has two), special tokens skipped. */
    public String detokenize(int[] ids) {
        return detokenize(ids, true);
    }

    /** Ids to text; an id outside the vocabulary throws status {@link QuillException#INVALID_ARGUMENT}. */
    public String detokenize(int[] ids, boolean skipSpecial) {
        if (ids == null) throw new NullPointerException("ids");
        long h = acquire();
        try {
            return Native.detokenize(h, ids, skipSpecial);
        } finally {
            release();
        }
    }

    /** A session sized to fit the model (one input per call, its default lengths and beams). */
    public Session newSession() {
        return newSession(null);
    }

    /** A session with the given limits (null: all defaults). */
    public Session newSession(SessionOptions options) {
        long h = acquire();
        try {
            return new Session(Native.sessionNew(h, options == null ? null : options.pack()));
        } finally {
            release();
        }
    }

    /** Frees the model; waits for calls running on it. Idempotent. */
    @Override
    public void close() {
        lock.writeLock().lock();
        try {
            long h = handle;
            handle = 0;
            if (h != 0) Native.modelFree(h);
        } finally {
            lock.writeLock().unlock();
        }
    }
}
