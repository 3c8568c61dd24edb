// quill.hpp — header-only C++17 RAII wrapper over the quill C API (include/quill.h).
//
// Errors are exceptions (quill::error, carrying the status and the library's message); models,
// sessions and results free themselves. Threads: a quill::model may be shared by any number of
// threads; a quill::session belongs to one thread at a time (cancel() excepted).
//
//   quill::model m("model.quill");
//   quill::session s = m.new_session();            // sized to fit the model
//   auto out = s.generate_text({"Open the file"}); // the model's own decoding defaults
//   std::cout << out[0][0].text << "\n";
#pragma once

#include <quill.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace quill {

class error : public std::runtime_error {
 public:
  error(quill_status status, const std::string &message)
      : std::runtime_error(std::string(quill_status_str(status)) + ": " + message), status_(status) {}
  quill_status status() const noexcept { return status_; }

 private:
  quill_status status_;
};

inline void check(quill_status s) {
  if (s != QUILL_OK) throw error(s, quill_last_error());
}

/// One generated sequence.
struct hypothesis {
  std::vector<uint32_t> ids;
  std::string text;  // empty for generations from ids
  float score = 0;
};

/// Decoding options (defaults: the model's own, see quill_generate_default_params).
struct options {
  quill_generate_params params{};
};

/// Called with the final tokens of input `input` and their text (empty for ids generation);
/// return false to stop.
using stream_fn = std::function<bool(size_t input, const std::vector<uint32_t> &ids, const std::string &text)>;

class session;

class model {
 public:
  explicit model(const std::string &path, uint32_t threads = 0, bool in_memory = false) {
    quill_model_params p{};
    check(quill_model_default_params(&p));
    p.threads = threads;
    p.in_memory = in_memory ? 1 : 0;
    quill_model *m = nullptr;
    check(quill_model_open(path.c_str(), &p, &m));
    ptr_.reset(m);
  }

  quill_model_info info() const {
    quill_model_info i{};
    i.struct_size = sizeof i;
    check(quill_model_info_get(ptr_.get(), &i));
    return i;
  }

  std::vector<uint32_t> tokenize(const std::string &text, bool add_special = true) const {
    size_t n = 0;
    quill_status s = quill_tokenize(ptr_.get(), text.c_str(), add_special, nullptr, 0, &n);
    if (s != QUILL_OK && s != QUILL_ERR_BUFFER_TOO_SMALL) check(s);
    std::vector<uint32_t> ids(n);
    check(quill_tokenize(ptr_.get(), text.c_str(), add_special, ids.data(), ids.size(), &n));
    return ids;
  }

  std::string detokenize(const std::vector<uint32_t> &ids, bool skip_special = true) const {
    size_t len = 0;
    quill_status s = quill_detokenize(ptr_.get(), ids.data(), ids.size(), skip_special, nullptr, 0, &len);
    if (s != QUILL_OK && s != QUILL_ERR_BUFFER_TOO_SMALL) check(s);
    std::string text(len + 1, '\0');
    check(quill_detokenize(ptr_.get(), ids.data(), ids.size(), skip_special, text.data(), text.size(), &len));
    text.resize(len);
    return text;
  }

  options default_options() const {
    options o;
    check(quill_generate_default_params(ptr_.get(), &o.params));
    return o;
  }

  /// A session; a length or `beams` of 0 fits the model (its positions, its default decoding).
  session new_session(uint32_t max_batch = 1, uint32_t max_input_len = 0, uint32_t max_new_tokens = 0,
                      uint32_t beams = 0) const;

  const quill_model *get() const noexcept { return ptr_.get(); }

 private:
  struct deleter {
    void operator()(quill_model *m) const noexcept { quill_model_free(m); }
  };
  std::unique_ptr<quill_model, deleter> ptr_;
};

class session {
 public:
  explicit session(quill_session *s) : ptr_(s) {}

  /// From any thread: stops the running generation.
  void cancel() const { check(quill_session_cancel(ptr_.get())); }

  /// The model's decoding defaults lowered to what this session holds: start from these and
  /// change what you need.
  options default_options() {
    options o;
    check(quill_session_generate_params(ptr_.get(), &o.params, sizeof o.params));
    return o;
  }

  std::vector<std::vector<hypothesis>> generate_ids(const std::vector<std::vector<uint32_t>> &inputs, const options &o,
                                                    stream_fn on_tokens = nullptr, bool *stopped = nullptr) {
    return ids_call(inputs, &o.params, on_tokens, stopped);
  }

  /// With the model's own decoding defaults.
  std::vector<std::vector<hypothesis>> generate_ids(const std::vector<std::vector<uint32_t>> &inputs) {
    return ids_call(inputs, nullptr, nullptr, nullptr);
  }

  std::vector<std::vector<hypothesis>> generate_text(const std::vector<std::string> &texts, const options &o,
                                                     stream_fn on_tokens = nullptr, bool *stopped = nullptr) {
    return text_call(texts, &o.params, on_tokens, stopped);
  }

  /// With the model's own decoding defaults.
  std::vector<std::vector<hypothesis>> generate_text(const std::vector<std::string> &texts) {
    return text_call(texts, nullptr, nullptr, nullptr);
  }

  /// Adds a message with `role` ("system", "user", "assistant") to the conversation without
  /// generating: a system prompt before the first turn, or earlier turns to continue from.
  /// Needs a model with a chat template (else a quill::error, QUILL_ERR_INVALID_ARGUMENT).
  void chat_add(const std::string &role, const std::string &content) {
    check(quill_chat_add(ptr_.get(), role.c_str(), content.c_str()));
  }

  /// One turn of a conversation with a decoder-only model (the session keeps the earlier turns'
  /// cache), with the model's decoding defaults: `message` is the user's message, formatted with
  /// the model's chat template when it has one (else given as it is). Returns the reply.
  hypothesis chat(const std::string &message, stream_fn on_tokens = nullptr) {
    quill_result *r = nullptr;
    call_state st{&on_tokens, nullptr};
    quill_status s = quill_chat_turn(ptr_.get(), message.c_str(), nullptr, on_tokens ? &trampoline : nullptr, &st, &r);
    result_ptr owned(r, quill_result_free);  // freed on every path below
    check(s);
    if (st.exception) std::rethrow_exception(st.exception);
    return collect(r, true, nullptr)[0][0];
  }

  /// Forgets the conversation and the started sequences.
  void reset() { check(quill_session_reset(ptr_.get())); }

 private:
  struct call_state {
    stream_fn *fn;
    std::exception_ptr exception;
  };
  using result_ptr = std::unique_ptr<quill_result, void (*)(quill_result *)>;

  std::vector<std::vector<hypothesis>> ids_call(const std::vector<std::vector<uint32_t>> &inputs,
                                                const quill_generate_params *p, stream_fn on_tokens, bool *stopped) {
    std::vector<const uint32_t *> ptrs;
    std::vector<size_t> lens;
    for (const auto &v : inputs) {
      ptrs.push_back(v.data());
      lens.push_back(v.size());
    }
    quill_result *r = nullptr;
    call_state st{&on_tokens, nullptr};
    quill_status s = quill_generate_ids(ptr_.get(), ptrs.data(), lens.data(), inputs.size(), p,
                                        on_tokens ? &trampoline : nullptr, &st, &r);
    result_ptr owned(r, quill_result_free);  // freed also when the callback's exception is rethrown
    check(s);
    if (st.exception) std::rethrow_exception(st.exception);
    return collect(r, false, stopped);
  }

  std::vector<std::vector<hypothesis>> text_call(const std::vector<std::string> &texts, const quill_generate_params *p,
                                                 stream_fn on_tokens, bool *stopped) {
    std::vector<const char *> ptrs;
    for (const auto &t : texts) ptrs.push_back(t.c_str());
    quill_result *r = nullptr;
    call_state st{&on_tokens, nullptr};
    quill_status s = quill_generate_text(ptr_.get(), ptrs.data(), ptrs.size(), p, on_tokens ? &trampoline : nullptr,
                                         &st, &r);
    result_ptr owned(r, quill_result_free);
    check(s);
    if (st.exception) std::rethrow_exception(st.exception);
    return collect(r, true, stopped);
  }

  // The C callback: exceptions must not cross into the library, so they stop the generation and
  // are rethrown afterwards.
  static int32_t trampoline(void *user, size_t input, const uint32_t *ids, size_t n, const char *text, size_t len) {
    auto *st = static_cast<call_state *>(user);
    try {
      std::vector<uint32_t> v(ids, ids + n);
      return (*st->fn)(input, v, text ? std::string(text, len) : std::string()) ? 0 : 1;
    } catch (...) {
      st->exception = std::current_exception();
      return 1;
    }
  }

  /// Reads a result (owned by the caller).
  static std::vector<std::vector<hypothesis>> collect(const quill_result *r, bool with_text, bool *stopped) {
    if (stopped) *stopped = quill_result_stopped(r) != 0;
    std::vector<std::vector<hypothesis>> out(quill_result_inputs(r));
    for (size_t i = 0; i < out.size(); i++) {
      for (size_t h = 0; h < quill_result_hypotheses(r, i); h++) {
        hypothesis x;
        const uint32_t *ids = nullptr;
        size_t n = 0;
        check(quill_result_ids(r, i, h, &ids, &n));
        x.ids.assign(ids, ids + n);
        check(quill_result_score(r, i, h, &x.score));
        if (with_text) {
          const char *t = nullptr;
          check(quill_result_text(r, i, h, &t));
          x.text = t;
        }
        out[i].push_back(std::move(x));
      }
    }
    return out;
  }

  struct deleter {
    void operator()(quill_session *s) const noexcept { quill_session_free(s); }
  };
  std::unique_ptr<quill_session, deleter> ptr_;
};

inline session model::new_session(uint32_t max_batch, uint32_t max_input_len, uint32_t max_new_tokens,
                                  uint32_t beams) const {
  quill_session_params p{};
  check(quill_session_default_params(&p));
  p.max_batch = max_batch;
  p.max_input_len = max_input_len;
  p.max_new_tokens = max_new_tokens;
  p.beams = beams;
  quill_session *s = nullptr;
  check(quill_session_new(ptr_.get(), &p, &s));
  return session(s);
}

}  // namespace quill
