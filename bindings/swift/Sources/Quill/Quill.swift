// A thin Swift wrapper over the quill C API. Untested here (no Swift toolchain on the build
// machines): the module map is checked with clang's module support, this file is not compiled.
import CQuill

public struct QuillError: Error, CustomStringConvertible {
    public let status: quill_status
    public let message: String
    public var description: String { "\(String(cString: quill_status_str(Int32(status.rawValue)))): \(message)" }
}

@inline(__always)
func check(_ status: quill_status) throws {
    if status != QUILL_OK { throw QuillError(status: status, message: String(cString: quill_last_error())) }
}

/// An open model; share it between threads.
public final class Model {
    let handle: OpaquePointer

    public init(path: String, threads: UInt32 = 0) throws {
        // Swift does not import the header's function-like macros: the _init functions take the
        // struct's size explicitly.
        var params = quill_model_params()
        try check(quill_model_params_init(&params, MemoryLayout<quill_model_params>.size))
        params.threads = threads
        var out: OpaquePointer?
        try check(quill_model_open(path, &params, &out))
        handle = out!
    }

    deinit { quill_model_free(handle) }

    public func tokenize(_ text: String, addSpecial: Bool = true) throws -> [UInt32] {
        var n = 0
        let first = quill_tokenize(handle, text, addSpecial ? 1 : 0, nil, 0, &n)
        if first != QUILL_ERR_BUFFER_TOO_SMALL { try check(first) }
        var ids = [UInt32](repeating: 0, count: max(n, 1))
        try check(quill_tokenize(handle, text, addSpecial ? 1 : 0, &ids, ids.count, &n))
        return Array(ids.prefix(n))
    }
}

/// A session: the cache of one user; one thread at a time.
public final class Session {
    let handle: OpaquePointer
    let model: Model

    /// 0 fits the model (its positions, its default decoding).
    public init(model: Model, maxInputLength: UInt32 = 0, maxNewTokens: UInt32 = 0) throws {
        var params = quill_session_params()
        try check(quill_session_params_init(&params, MemoryLayout<quill_session_params>.size))
        params.max_input_len = maxInputLength
        params.max_new_tokens = maxNewTokens
        var out: OpaquePointer?
        try check(quill_session_new(model.handle, &params, &out))
        handle = out!
        self.model = model
    }

    deinit { quill_session_free(handle) }

    /// Translates or continues `text` with the model's default decoding (`maxNewTokens` 0: the
    /// model's default length).
    public func generate(_ text: String, maxNewTokens: UInt32 = 0) throws -> String {
        var params = quill_generate_params()
        try check(quill_generate_params_init(model.handle, &params, MemoryLayout<quill_generate_params>.size))
        params.max_new_tokens = maxNewTokens
        var result: OpaquePointer?
        try text.withCString { ptr in
            var texts: [UnsafePointer<CChar>?] = [ptr]
            try check(quill_generate_text(handle, &texts, 1, &params, nil, nil, &result))
        }
        defer { quill_result_free(result) }
        var out: UnsafePointer<CChar>?
        try check(quill_result_text(result, 0, 0, &out))
        return String(cString: out!)
    }
}
