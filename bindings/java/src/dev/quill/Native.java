package dev.quill;

/**
 * The JNI entry points of libquill_jni (jni/quill_jni.c). The library is loaded by the first use
 * of this class: from the absolute path in the system property {@code quill.jni.path} when it is
 * set, else with {@code System.loadLibrary("quill_jni")} (java.library.path; on Android the
 * APK's native library directory). Handles are C pointers; the public classes make sure none is
 * used after it is freed.
 */
final class Native {
    private Native() {}

    static {
        String path = System.getProperty("quill.jni.path");
        if (path != null && !path.isEmpty()) {
            System.load(path);
        } else {
            System.loadLibrary("quill_jni");
        }
        int library = abiVersion();
        int header = headerAbiVersion();
        if (library != header) {
            throw new UnsatisfiedLinkError("libquill has ABI version " + library + ", but libquill_jni was built"
                    + " against a quill.h of ABI version " + header);
        }
    }

    static native String version();

    static native int versionNumber();

    static native int abiVersion();

    static native int headerAbiVersion();

    static native String statusName(int status);

    static native long modelOpen(String path, int threads, boolean inMemory);

    static native void modelFree(long model);

    /** Fills {@code out} (ModelInfo.FIELDS numbers) and returns the kernel level. */
    static native String modelInfo(long model, long[] out);

    static native int[] modelEosIds(long model);

    static native int[] tokenize(long model, String text, boolean addSpecial, boolean target);

    static native String detokenize(long model, int[] ids, boolean skipSpecial);

    /** {@code options}: SessionOptions.pack(), or null for all defaults. */
    static native long sessionNew(long model, long[] options);

    static native void sessionFree(long session);

    static native void sessionCancel(long session);

    static native void sessionReset(long session);

    static native void sessionLimits(long session, long[] out);

    /** {@code options}: GenerateOptions.pack(), or null for the model's defaults (NULL params). */
    static native Generation generateText(long session, String[] texts, long[] options, StreamCallback callback);

    static native Generation generateIds(long session, int[][] inputs, long[] options, StreamCallback callback);

    static native Generation chat(long session, String message, long[] options, StreamCallback callback);

    static native void chatAdd(long session, String role, String content);
}
