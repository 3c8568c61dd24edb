package dev.quill;

/**
 * The limits a session is sized for (all its memory is allocated when it is made). Fields left
 * unset keep the C defaults: 1 input per call, and 0 for the others, which fits the model (512
 * input tokens, the model's default new tokens and beams, shortened to its positions; half the
 * physical memory as budget). Setters return this, for chaining.
 */
public final class SessionOptions {
    static final int MAX_BATCH = 1;
    static final int MAX_INPUT_LEN = 2;
    static final int MAX_NEW_TOKENS = 3;
    static final int BEAMS = 4;
    static final int MAX_MEMORY = 5;
    static final int PACKED_LEN = 6;

    /** [0]: mask of the fields set (bit i-1 for field i); [i]: field i. */
    private final long[] v;

    public SessionOptions() {
        v = new long[PACKED_LEN];
    }

    SessionOptions(long[] packed) {
        v = packed;
    }

    private SessionOptions set(int field, long value) {
        v[field] = value;
        v[0] |= 1L << (field - 1);
        return this;
    }

    private SessionOptions setU32(int field, int value, String name) {
        if (value < 0) throw new IllegalArgumentException(name + " must be >= 0, not " + value);
        return set(field, value);
    }

    /** Inputs per call (at least 1; the default is 1). */
    public SessionOptions maxBatch(int n) {
        return setU32(MAX_BATCH, n, "maxBatch");
    }

    /** Tokens per input; 0 fits the model. */
    public SessionOptions maxInputLen(int n) {
        return setU32(MAX_INPUT_LEN, n, "maxInputLen");
    }

    /** New tokens per generation; 0 fits the model. */
    public SessionOptions maxNewTokens(int n) {
        return setU32(MAX_NEW_TOKENS, n, "maxNewTokens");
    }

    /** Most beams of a beam search; 0 fits the model's default decoding. */
    public SessionOptions beams(int n) {
        return setU32(BEAMS, n, "beams");
    }

    /** Bytes the session may use; 0 = half the physical memory. */
    public SessionOptions maxMemory(long bytes) {
        if (bytes < 0) throw new IllegalArgumentException("maxMemory must be >= 0, not " + bytes);
        return set(MAX_MEMORY, bytes);
    }

    public int getMaxBatch() {
        return isSet(MAX_BATCH) ? (int) v[MAX_BATCH] : 1;
    }

    public int getMaxInputLen() {
        return (int) v[MAX_INPUT_LEN];
    }

    public int getMaxNewTokens() {
        return (int) v[MAX_NEW_TOKENS];
    }

    public int getBeams() {
        return (int) v[BEAMS];
    }

    public long getMaxMemory() {
        return v[MAX_MEMORY];
    }

    private boolean isSet(int field) {
        return ((v[0] >>> (field - 1)) & 1) != 0;
    }

    long[] pack() {
        return v.clone();
    }

    @Override
    public String toString() {
        return "SessionOptions{maxBatch=" + getMaxBatch() + ", maxInputLen=" + getMaxInputLen() + ", maxNewTokens="
                + getMaxNewTokens() + ", beams=" + getBeams() + ", maxMemory=" + getMaxMemory() + "}";
    }
}
