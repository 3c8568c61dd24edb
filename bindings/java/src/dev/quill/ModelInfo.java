package dev.quill;

import java.util.Arrays;

/** What a model is ({@code quill_model_info}). Ids that a model does not have are -1. */
public final class ModelInfo {
    /** Encoder-decoder Transformer (translation). */
    public static final int ARCH_SEQ2SEQ = 0;
    /** Decoder-only Transformer (chat, completion). */
    public static final int ARCH_DECODER_ONLY = 1;
    /** LSTM encoder-decoder. */
    public static final int ARCH_LSTM_SEQ2SEQ = 2;

    /** How many numbers Native.modelInfo writes (its order is the constructor's). */
    static final int FIELDS = 16;

    /** One of the ARCH_ constants. */
    public final int arch;
    public final int vocabSize;
    public final int dModel;
    public final int encoderLayers;
    public final int decoderLayers;
    /** Worker threads the model was opened with. */
    public final int threads;
    /** True when the model carries a tokenizer (the text functions work). */
    public final boolean hasTokenizer;
    /** True when a seq2seq model has a separate target tokenizer. */
    public final boolean hasTargetTokenizer;
    /** The kernel level in use: "scalar", "avx2", "avx512" or "neon". */
    public final String isa;
    public final long fileBytes;
    /** Bytes copied at open (0 for files quill wrote). */
    public final long copiedBytes;
    /** The longest sequence the model's positions cover; 0 when they set no limit. */
    public final int maxPositions;
    public final int bosId;
    public final int padId;
    /** The end-of-sequence ids (possibly none). */
    public final int[] eosIds;
    /** The id a seq2seq decoder starts from; -1 for decoder-only models. */
    public final int decoderStartId;

    ModelInfo(long[] v, String isa, int[] eosIds) {
        arch = (int) v[0];
        vocabSize = (int) v[1];
        dModel = (int) v[2];
        encoderLayers = (int) v[3];
        decoderLayers = (int) v[4];
        threads = (int) v[5];
        hasTokenizer = v[6] != 0;
        fileBytes = v[7];
        copiedBytes = v[8];
        maxPositions = (int) v[9];
        bosId = (int) v[10]; // QUILL_NO_ID (UINT32_MAX) becomes -1
        // v[11] is the first end-of-sequence id, v[14] their count: eosIds has them all
        padId = (int) v[12];
        decoderStartId = (int) v[13];
        hasTargetTokenizer = v[15] != 0;
        this.isa = isa;
        this.eosIds = eosIds;
    }

    /** "seq2seq", "decoder-only" or "lstm-seq2seq". */
    public String archName() {
        switch (arch) {
            case ARCH_SEQ2SEQ:
                return "seq2seq";
            case ARCH_DECODER_ONLY:
                return "decoder-only";
            case ARCH_LSTM_SEQ2SEQ:
                return "lstm-seq2seq";
            default:
                return "arch " + arch;
        }
    }

    @Override
    public String toString() {
        return "ModelInfo{arch=" + archName() + ", vocabSize=" + vocabSize + ", dModel=" + dModel
                + ", encoderLayers=" + encoderLayers + ", decoderLayers=" + decoderLayers + ", threads=" + threads
                + ", hasTokenizer=" + hasTokenizer + ", hasTargetTokenizer=" + hasTargetTokenizer + ", isa=" + isa
                + ", fileBytes=" + fileBytes + ", maxPositions=" + maxPositions + ", bosId=" + bosId + ", padId="
                + padId + ", eosIds=" + Arrays.toString(eosIds) + ", decoderStartId=" + decoderStartId + "}";
    }
}
