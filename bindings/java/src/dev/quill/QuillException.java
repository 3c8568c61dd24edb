package dev.quill;

/**
 * A failed quill call: {@link #getStatus()} is the C status ({@code quill_status}), the message is
 * {@code "NAME: "} followed by the library's own message ({@code quill_last_error()}).
 */
public class QuillException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** An argument is null, out of range, not UTF-8, or above a session's limits. */
    public static final int INVALID_ARGUMENT = 1;
    /** The operating system refused a file operation. */
    public static final int IO = 2;
    /** The model file is malformed, truncated or inconsistent. */
    public static final int FORMAT = 3;
    /** The model file needs a feature or format version this build does not have. */
    public static final int UNSUPPORTED = 4;
    /** The model configuration is invalid. */
    public static final int CONFIG = 5;
    /** A buffer was too small (the binding sizes its buffers, so this is not expected). */
    public static final int BUFFER_TOO_SMALL = 6;
    /** Memory could not be allocated, or a session's limits need more than its budget. */
    public static final int OUT_OF_MEMORY = 7;
    /** The operation was cancelled. */
    public static final int CANCELLED = 8;
    /** A bug in quill caught at its boundary (please report it with the message). */
    public static final int INTERNAL = 9;

    private final int status;
    private final String statusName;
    private final String detail;

    /** Made by the native code, with the status's name from {@code quill_status_str}. */
    QuillException(int status, String statusName, String detail) {
        super(statusName + ": " + detail);
        this.status = status;
        this.statusName = statusName;
        this.detail = detail;
    }

    /** The C status code (one of the constants of this class). */
    public int getStatus() {
        return status;
    }

    /** The status's name, e.g. {@code "QUILL_ERR_IO"}. */
    public String getStatusName() {
        return statusName;
    }

    /** The library's message alone (without the status's name). */
    public String getDetail() {
        return detail;
    }

    /** The name quill gives a status ({@code "QUILL_ERR_UNKNOWN"} for an unknown one). */
    public static String statusName(int status) {
        return Native.statusName(status);
    }
}
