package dev.quill;

/** The version of the quill library loaded. */
public final class Quill {
    private Quill() {}

    /** {@code "MAJOR.MINOR.PATCH"}. */
    public static String version() {
        return Native.version();
    }

    /** {@code MAJOR * 10000 + MINOR * 100 + PATCH}. */
    public static int versionNumber() {
        return Native.versionNumber();
    }

    /** The ABI version of the library (checked against the binding's when it is loaded). */
    public static int abiVersion() {
        return Native.abiVersion();
    }
}
