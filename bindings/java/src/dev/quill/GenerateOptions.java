package dev.quill;

/**
 * Decoding options. Only the fields set here are applied, over the model's own decoding defaults
 * ({@code quill_generate_default_params(model)}); an unset {@code beams} keeps the model's
 * default lowered to what the session holds (to 1 for a chat turn), as when no options are
 * given. Setters return this, for chaining; quill checks the values when they are used.
 *
 * <pre>{@code
 * GenerateOptions greedy = new GenerateOptions().beams(1).maxNewTokens(64);
 * }</pre>
 */
public final class GenerateOptions {
    static final int MAX_NEW_TOKENS = 1;
    static final int MIN_NEW_TOKENS = 2;
    static final int BEAMS = 3;
    static final int N_BEST = 4;
    static final int LENGTH_PENALTY = 5;
    static final int SAMPLE = 6;
    static final int TEMPERATURE = 7;
    static final int TOP_K = 8;
    static final int TOP_P = 9;
    static final int MIN_P = 10;
    static final int SEED = 11;
    static final int REPETITION_PENALTY = 12;
    static final int NO_REPEAT_NGRAM_SIZE = 13;
    static final int PACKED_LEN = 14;

    /** [0]: mask of the fields set (bit i-1 for field i); [i]: field i (floats as their bits). */
    private final long[] v;

    public GenerateOptions() {
        v = new long[PACKED_LEN];
    }

    private GenerateOptions(long[] v) {
        this.v = v;
    }

    /** An independent copy. */
    public GenerateOptions copy() {
        return new GenerateOptions(v.clone());
    }

    private GenerateOptions set(int field, long value) {
        v[field] = value;
        v[0] |= 1L << (field - 1);
        return this;
    }

    private GenerateOptions setU32(int field, int value, String name) {
        if (value < 0) throw new IllegalArgumentException(name + " must be >= 0, not " + value);
        return set(field, value);
    }

    private GenerateOptions setFloat(int field, float value) {
        return set(field, Float.floatToRawIntBits(value) & 0xFFFFFFFFL);
    }

    /** 0: the model's default; at most the session's maxNewTokens (longer is shortened). */
    public GenerateOptions maxNewTokens(int n) {
        return setU32(MAX_NEW_TOKENS, n, "maxNewTokens");
    }

    /** End-of-sequence is held back until this many tokens. */
    public GenerateOptions minNewTokens(int n) {
        return setU32(MIN_NEW_TOKENS, n, "minNewTokens");
    }

    /** 1: greedy or sampling; more: beam search (at most the session's beams). */
    public GenerateOptions beams(int n) {
        return setU32(BEAMS, n, "beams");
    }

    /** Hypotheses returned per input under beam search (clamped into 1..beams). */
    public GenerateOptions nBest(int n) {
        return setU32(N_BEST, n, "nBest");
    }

    /** Beam search's length penalty (transformers semantics). */
    public GenerateOptions lengthPenalty(float p) {
        return setFloat(LENGTH_PENALTY, p);
    }

    /** Sample (temperature, topK, topP, minP, seed) instead of taking the best token; needs beams 1. */
    public GenerateOptions sample(boolean on) {
        return set(SAMPLE, on ? 1 : 0);
    }

    public GenerateOptions temperature(float t) {
        return setFloat(TEMPERATURE, t);
    }

    /** 0: no limit. */
    public GenerateOptions topK(int k) {
        return setU32(TOP_K, k, "topK");
    }

    /** In (0, 1]. */
    public GenerateOptions topP(float p) {
        return setFloat(TOP_P, p);
    }

    /** In [0, 1]. */
    public GenerateOptions minP(float p) {
        return setFloat(MIN_P, p);
    }

    /** The sampler's seed (all 64 bits are used, as unsigned). */
    public GenerateOptions seed(long seed) {
        return set(SEED, seed);
    }

    /** Greater than 0; 1 is off. */
    public GenerateOptions repetitionPenalty(float p) {
        return setFloat(REPETITION_PENALTY, p);
    }

    /** 0: off. */
    public GenerateOptions noRepeatNgramSize(int n) {
        return setU32(NO_REPEAT_NGRAM_SIZE, n, "noRepeatNgramSize");
    }

    /** A copy of the values for the native side. */
    long[] pack() {
        return v.clone();
    }
}
