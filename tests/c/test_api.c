/* The C API end to end, compiled against libquill.so and libquill.a by tests/c_api.rs.
 *
 *   test_api MODEL.quill "SOURCE TEXT" EXPECTED_GREEDY_IDS(comma-separated)
 *
 * Exits 0 when every check passes; prints the first failure otherwise. */
#include <quill.h>

#include <pthread.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ABI discipline: layouts are fixed once shipped (fields are only appended). */
_Static_assert(offsetof(quill_model_params, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(quill_session_params, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(quill_generate_params, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(quill_model_info, struct_size) == 0, "struct_size first");
_Static_assert(offsetof(quill_model_params, prefetch) == 16, "quill_model_params layout");
_Static_assert(sizeof(quill_model_params) == 24, "quill_model_params layout");
_Static_assert(offsetof(quill_session_params, max_memory) == 24, "quill_session_params layout");
_Static_assert(sizeof(quill_session_params) == 32, "quill_session_params layout");
_Static_assert(offsetof(quill_generate_params, seed) == 48, "quill_generate_params layout");
_Static_assert(sizeof(quill_generate_params) == 64, "quill_generate_params layout");
_Static_assert(offsetof(quill_model_info, isa) == 40, "quill_model_info layout");
_Static_assert(offsetof(quill_model_info, copied_bytes) == 56, "quill_model_info layout");
_Static_assert(offsetof(quill_model_info, max_positions) == 64, "quill_model_info layout");
_Static_assert(offsetof(quill_model_info, has_target_tokenizer) == 88, "quill_model_info layout");
_Static_assert(QUILL_OK == 0 && QUILL_ERR_CANCELLED == 8 && QUILL_ERR_INTERNAL == 9, "status values never change");

static int failures = 0;
#define CHECK(cond, ...)                                                          \
  do {                                                                            \
    if (!(cond)) {                                                                \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);    \
      fprintf(stderr, __VA_ARGS__);                                               \
      fprintf(stderr, " (last error: %s)\n", quill_last_error());                 \
      failures++;                                                                 \
    }                                                                             \
  } while (0)
#define OK(call) CHECK((call) == QUILL_OK, "%s", #call)

static size_t parse_ids(const char *s, uint32_t *out, size_t cap) {
  size_t n = 0;
  while (*s && n < cap) {
    out[n++] = (uint32_t)strtoul(s, (char **)&s, 10);
    if (*s == ',') s++;
  }
  return n;
}

struct stream_state {
  char text[4096];
  size_t len;
  size_t tokens;
  quill_session *cancel_session; /* cancel after 3 tokens when set */
};

static int32_t on_tokens(void *user, size_t input, const uint32_t *ids, size_t n_ids, const char *text,
                         size_t text_len) {
  struct stream_state *st = user;
  (void)ids;
  if (input != 0) return 0;
  st->tokens += n_ids;
  if (text && st->len + text_len < sizeof st->text) {
    memcpy(st->text + st->len, text, text_len);
    st->len += text_len;
    st->text[st->len] = 0;
  }
  if (st->cancel_session && st->tokens >= 3) quill_session_cancel(st->cancel_session);
  return 0;
}

static int32_t stop_after_two(void *user, size_t input, const uint32_t *ids, size_t n, const char *t, size_t l) {
  (void)input; (void)ids; (void)t; (void)l;
  size_t *count = user;
  *count += n;
  return *count >= 2;
}

/* quill_last_error and quill_status_str from a thread-specific-data destructor, which runs after
 * the thread's Rust thread-locals are gone: they must answer, not abort. */
static pthread_key_t teardown_key;
static const char *teardown_message = NULL;
static void on_thread_teardown(void *arg) {
  (void)arg;
  teardown_message = quill_last_error();
  quill_model *m = NULL;
  (void)quill_model_open(NULL, NULL, &m); /* a failure with nowhere to keep its message */
  teardown_message = quill_last_error();
}
static void *thread_that_fails(void *arg) {
  (void)arg;
  quill_model *m = NULL;
  (void)quill_model_open("/nonexistent/model.quill", NULL, &m); /* fills the thread's message */
  pthread_setspecific(teardown_key, (void *)1);
  return NULL;
}

/* A log callback that calls back into quill: replaces itself while being called. */
static int log_calls = 0;
static void log_and_unset(void *user, int32_t level, const char *message) {
  (void)user;
  (void)message;
  if (level == 1) log_calls++;
  quill_set_log_callback(NULL, NULL);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s MODEL TEXT EXPECTED_IDS\n", argv[0]);
    return 2;
  }
  const char *path = argv[1], *text = argv[2];
  uint32_t expected[256];
  size_t n_expected = parse_ids(argv[3], expected, 256);

  /* Versions: the header and the library agree. */
  CHECK(quill_abi_version() == QUILL_ABI_VERSION, "abi");
  CHECK(quill_version_number() == QUILL_VERSION_NUMBER, "version number");
  CHECK(strcmp(quill_status_str(QUILL_ERR_FORMAT), "QUILL_ERR_FORMAT") == 0, "status name");
  CHECK(strcmp(quill_status_str(12345), "QUILL_ERR_UNKNOWN") == 0, "unknown status name");

  /* Open, with explicit params. */
  quill_model_params mp;
  OK(quill_model_default_params(&mp));
  mp.threads = 1;
  mp.prefetch = 1;
  quill_model *model = NULL;
  OK(quill_model_open(path, &mp, &model));
  if (!model) return 1;
  quill_model_info info = {.struct_size = sizeof info};
  OK(quill_model_info_get(model, &info));
  CHECK(info.struct_size == sizeof info, "struct_size written");
  CHECK(info.arch == 0 && info.vocab_size == 1000 && info.has_tokenizer && info.threads == 1, "info");
  /* Introspection: positions and control ids (the fixture: eos 0, pad and decoder start 999). */
  CHECK(info.max_positions > 0 && info.eos_id == 0 && info.n_eos_ids == 1 && info.pad_id == 999 &&
            info.decoder_start_id == 999 && info.bos_id == QUILL_NO_ID && !info.has_target_tokenizer,
        "positions %u, eos %u (%u ids), pad %u, start %u, bos %u, target tokenizer %d", info.max_positions,
        info.eos_id, info.n_eos_ids, info.pad_id, info.decoder_start_id, info.bos_id, info.has_target_tokenizer);
  uint32_t eos_ids[4];
  size_t n_eos = 0;
  CHECK(quill_model_eos_ids(model, NULL, 0, &n_eos) == QUILL_ERR_BUFFER_TOO_SMALL && n_eos == 1, "eos size query");
  OK(quill_model_eos_ids(model, eos_ids, 4, &n_eos));
  CHECK(n_eos == 1 && eos_ids[0] == 0, "eos ids");
  CHECK(info.isa && strlen(info.isa) > 0, "isa name");
  CHECK(info.file_bytes > 100000 && info.copied_bytes == 0, "file %llu bytes, copied %llu",
        (unsigned long long)info.file_bytes, (unsigned long long)info.copied_bytes);

  /* Tokenize into a buffer, with a size query first. */
  size_t n_ids = 0;
  CHECK(quill_tokenize(model, text, 1, NULL, 0, &n_ids) == QUILL_ERR_BUFFER_TOO_SMALL, "size query");
  CHECK(n_ids > 0, "needed size reported");
  uint32_t ids[256];
  OK(quill_tokenize(model, text, 1, ids, 256, &n_ids));
  uint32_t target_ids[256];
  size_t n_target = 0;
  OK(quill_tokenize_target(model, text, 1, target_ids, 256, &n_target));
  CHECK(n_target == n_ids && memcmp(target_ids, ids, n_ids * sizeof *ids) == 0, "one tokenizer: target = source");
  char back[1024];
  size_t back_len = 0;
  CHECK(quill_detokenize(model, ids, n_ids, 1, back, 4, &back_len) == QUILL_ERR_BUFFER_TOO_SMALL, "small text buffer");
  OK(quill_detokenize(model, ids, n_ids, 1, back, sizeof back, &back_len));
  CHECK(back_len == strlen(back), "length without NUL");
  /* A NULL buffer with a nonzero capacity is an invalid argument, and nothing is written. */
  size_t untouched = 12345;
  CHECK(quill_tokenize(model, text, 1, NULL, 8, &untouched) == QUILL_ERR_INVALID_ARGUMENT && untouched == 12345,
        "NULL ids with capacity");
  CHECK(quill_model_eos_ids(model, NULL, 8, &untouched) == QUILL_ERR_INVALID_ARGUMENT && untouched == 12345,
        "NULL eos buffer with capacity");
  CHECK(quill_detokenize(model, ids, n_ids, 1, NULL, 8, &untouched) == QUILL_ERR_INVALID_ARGUMENT && untouched == 12345,
        "NULL text buffer with capacity");
  CHECK(strstr(quill_last_error(), "buf") != NULL, "the message names the buffer: %s", quill_last_error());

  /* Greedy from ids: the transformers golden. */
  quill_session_params sp;
  OK(quill_session_default_params(&sp));
  sp.max_batch = 2;
  sp.max_input_len = 64;
  sp.max_new_tokens = 32;
  sp.beams = 4;
  quill_session *session = NULL;
  OK(quill_session_new(model, &sp, &session));
  quill_generate_params gp;
  OK(quill_generate_default_params(model, &gp));
  CHECK(gp.struct_size == sizeof gp && gp.beams == 4 && gp.max_new_tokens == 24,
        "the model's defaults: %u beams, %u new tokens", gp.beams, gp.max_new_tokens);
  gp.beams = 1;
  gp.max_new_tokens = 24;
  const uint32_t *inputs[3] = {ids, ids, ids};
  size_t lens[3] = {n_ids, n_ids - 3, n_ids};
  quill_result *r = NULL;
  OK(quill_generate_ids(session, inputs, lens, 1, &gp, NULL, NULL, &r));
  const uint32_t *out_ids = NULL;
  size_t n_out = 0;
  OK(quill_result_ids(r, 0, 0, &out_ids, &n_out));
  CHECK(n_out == n_expected && memcmp(out_ids, expected, n_out * sizeof *out_ids) == 0, "greedy ids equal the golden");
  const char *t = NULL;
  CHECK(quill_result_text(r, 0, 0, &t) == QUILL_ERR_INVALID_ARGUMENT, "an ids result has no text");
  quill_result_free(r);

  /* Text in, text out, streamed: the pieces add up to the result's text. */
  struct stream_state st = {0};
  const char *texts[1] = {text};
  OK(quill_generate_text(session, texts, 1, &gp, on_tokens, &st, &r));
  OK(quill_result_text(r, 0, 0, &t));
  CHECK(strcmp(t, st.text) == 0, "streamed '%s' vs result '%s'", st.text, t);
  CHECK(!quill_result_stopped(r), "not stopped");
  quill_result_free(r);

  /* Beam search with n-best, and a batch of two. */
  gp.beams = 4;
  gp.n_best = 2;
  OK(quill_generate_ids(session, inputs, lens, 2, &gp, NULL, NULL, &r));
  CHECK(quill_result_inputs(r) == 2 && quill_result_hypotheses(r, 0) == 2, "2 inputs x 2 hypotheses");
  float s0 = 0, s1 = 0;
  OK(quill_result_score(r, 0, 0, &s0));
  OK(quill_result_score(r, 0, 1, &s1));
  CHECK(s0 >= s1, "best first: %f %f", s0, s1);
  quill_result_free(r);

  /* Seeded sampling is reproducible. */
  gp.beams = 1;
  gp.sample = 1;
  gp.seed = 42;
  gp.top_k = 20;
  quill_result *a = NULL, *b = NULL;
  OK(quill_generate_ids(session, inputs, lens, 1, &gp, NULL, NULL, &a));
  OK(quill_generate_ids(session, inputs, lens, 1, &gp, NULL, NULL, &b));
  const uint32_t *ia, *ib;
  size_t na, nb;
  OK(quill_result_ids(a, 0, 0, &ia, &na));
  OK(quill_result_ids(b, 0, 0, &ib, &nb));
  CHECK(na == nb && memcmp(ia, ib, na * sizeof *ia) == 0, "same seed, same ids");
  quill_result_free(a);
  quill_result_free(b);
  gp.sample = 0;

  /* A callback can stop; a cancel from the callback's thread stops too. */
  size_t count = 0;
  OK(quill_generate_ids(session, inputs, lens, 1, &gp, stop_after_two, &count, &r));
  CHECK(quill_result_stopped(r), "stopped by the callback");
  quill_result_free(r);
  struct stream_state cst = {.cancel_session = session};
  OK(quill_generate_text(session, texts, 1, &gp, on_tokens, &cst, &r));
  CHECK(quill_result_stopped(r) && cst.tokens <= 4, "cancelled after %zu tokens", cst.tokens);
  quill_result_free(r);

  /* Low level: start, step, logits; reset forgets the sequences. */
  OK(quill_session_start(session, inputs, lens, 1));
  OK(quill_session_reset(session));
  uint32_t one = 999;
  CHECK(quill_session_step(session, &one, 1) == QUILL_ERR_INVALID_ARGUMENT, "step after reset");
  OK(quill_session_start(session, inputs, lens, 1));
  uint32_t start = 999;
  OK(quill_session_step(session, &start, 1));
  const float *logits = NULL;
  size_t rows = 0, vocab = 0;
  OK(quill_session_logits(session, &logits, &rows, &vocab));
  CHECK(rows == 1 && vocab == 1000 && logits != NULL, "logits shape");

  /* Open from memory (64-byte aligned buffer: zero copy). */
  FILE *f = fopen(path, "rb");
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = aligned_alloc(64, ((size_t)size + 63) / 64 * 64);
  CHECK(fread(buf, 1, (size_t)size, f) == (size_t)size, "read the model");
  fclose(f);
  quill_model *m2 = NULL;
  OK(quill_model_open_memory(buf, (size_t)size, NULL, &m2));
  quill_model_info info2 = {.struct_size = sizeof info2};
  OK(quill_model_info_get(m2, &info2));
  CHECK(info2.vocab_size == 1000, "memory model");
  quill_model_free(m2);
  free(buf);

  /* All defaults: a session fitted to the model (its 4 default beams, its 24 new tokens) and the
   * model's own decoding, without sizing anything. */
  quill_session *ds = NULL;
  OK(quill_session_new(model, NULL, &ds));
  quill_session_params lim = {.struct_size = sizeof lim};
  OK(quill_session_limits(ds, &lim));
  CHECK(lim.max_batch == 1 && lim.beams == 4 && lim.max_new_tokens == 24 && lim.max_input_len > 0 &&
            lim.max_input_len <= info.max_positions && lim.max_memory > 0,
        "fitted limits: batch %u, beams %u, input %u, new %u", lim.max_batch, lim.beams, lim.max_input_len,
        lim.max_new_tokens);
  OK(quill_generate_text(ds, texts, 1, NULL, NULL, NULL, &r));
  OK(quill_result_text(r, 0, 0, &t));
  CHECK(strlen(t) > 0, "all-defaults text");
  quill_result_free(r);
  quill_generate_params dgp;
  OK(quill_generate_default_params(model, &dgp));
  OK(quill_generate_ids(ds, inputs, lens, 1, &dgp, NULL, NULL, &r));
  quill_result_free(r);
  /* 0 new tokens means the model's default, as 0 does for a session's lengths. */
  dgp.max_new_tokens = 0;
  OK(quill_generate_ids(ds, inputs, lens, 1, &dgp, NULL, NULL, &r));
  OK(quill_result_ids(r, 0, 0, &out_ids, &n_out));
  CHECK(n_out >= 1 && n_out <= 24, "default length: %zu tokens", n_out);
  quill_result_free(r);
  quill_session_free(ds);

  /* A session smaller than the model's defaults: NULL params (the defaults) are lowered to it
   * with a warning, through a log callback that calls back into quill. */
  quill_session_params small_sp = {.struct_size = sizeof small_sp};
  OK(quill_session_default_params(&small_sp));
  small_sp.beams = 1;
  OK(quill_session_new(model, &small_sp, &ds));
  OK(quill_set_log_callback(log_and_unset, NULL));
  OK(quill_generate_ids(ds, inputs, lens, 1, NULL, NULL, NULL, &r));
  CHECK(log_calls == 1, "one warning for the lowered beams, got %d", log_calls);
  quill_result_free(r);
  gp.beams = 4;
  CHECK(quill_generate_ids(ds, inputs, lens, 1, &gp, NULL, NULL, &r) == QUILL_ERR_INVALID_ARGUMENT,
        "explicit beams above the session: an error");
  gp.beams = 1;
  /* The defaults as a struct, already lowered to the session: change a field, generate. */
  quill_generate_params sgp;
  OK(quill_session_generate_params(ds, &sgp, sizeof sgp));
  CHECK(sgp.struct_size == sizeof sgp && sgp.beams == 1 && sgp.max_new_tokens == 24, "session defaults: %u beams",
        sgp.beams);
  sgp.max_new_tokens = 3;
  OK(quill_generate_ids(ds, inputs, lens, 1, &sgp, NULL, NULL, &r));
  quill_result_free(r);

  /* A cancel issued before a generation starts is not lost: it stops that generation at once,
   * and is cleared when it returns. */
  OK(quill_session_cancel(ds));
  OK(quill_generate_ids(ds, inputs, lens, 1, &gp, NULL, NULL, &r));
  OK(quill_result_ids(r, 0, 0, &out_ids, &n_out));
  CHECK(quill_result_stopped(r) && n_out == 0, "pending cancel: stopped %d after %zu tokens", quill_result_stopped(r),
        n_out);
  quill_result_free(r);
  OK(quill_generate_ids(ds, inputs, lens, 1, &gp, NULL, NULL, &r));
  CHECK(!quill_result_stopped(r), "the cancel was cleared");
  quill_result_free(r);
  OK(quill_session_cancel(ds));
  OK(quill_session_reset(ds));
  OK(quill_generate_ids(ds, inputs, lens, 1, &gp, NULL, NULL, &r));
  CHECK(!quill_result_stopped(r), "reset clears a pending cancel");
  quill_result_free(r);
  quill_session_free(ds);

  /* Decoding parameters are checked whatever the strategy. */
  quill_generate_params v = gp;
  v.beams = 0;
  CHECK(quill_generate_ids(session, inputs, lens, 1, &v, NULL, NULL, &r) == QUILL_ERR_INVALID_ARGUMENT, "beams 0");
  v = gp;
  v.min_new_tokens = 10;
  v.max_new_tokens = 5;
  CHECK(quill_generate_ids(session, inputs, lens, 1, &v, NULL, NULL, &r) == QUILL_ERR_INVALID_ARGUMENT, "min > max");
  v = gp;
  v.temperature = 0.0f / 0.0f;
  CHECK(quill_generate_ids(session, inputs, lens, 1, &v, NULL, NULL, &r) == QUILL_ERR_INVALID_ARGUMENT,
        "NaN temperature under greedy decoding");
  v = gp;
  v.top_p = 0;
  CHECK(quill_generate_ids(session, inputs, lens, 1, &v, NULL, NULL, &r) == QUILL_ERR_INVALID_ARGUMENT,
        "top_p 0 under greedy decoding");
  v = gp;
  v.sample = 1;
  v.beams = 2;
  CHECK(quill_generate_ids(session, inputs, lens, 1, &v, NULL, NULL, &r) == QUILL_ERR_INVALID_ARGUMENT,
        "sampling with beams");

  /* Versioned structs both ways: quill writes at most the caller's size. */
  struct {
    quill_session_params p;
    uint64_t canary;
  } guarded;
  guarded.canary = 0x5A5A5A5A5A5A5A5Aull;
  OK(quill_session_params_init(&guarded.p, 24));
  CHECK(guarded.p.struct_size == 24, "24 bytes written, struct_size %zu", guarded.p.struct_size);
  CHECK(quill_session_params_init(&guarded.p, 8) == QUILL_ERR_INVALID_ARGUMENT, "size below the first release");
  OK(quill_session_params_init(&guarded.p, sizeof guarded));
  CHECK(guarded.p.struct_size == sizeof guarded.p && guarded.canary == 0x5A5A5A5A5A5A5A5Aull,
        "a larger struct: only what quill knows is written");
  quill_model_info small_info;
  memset(&small_info, 0xAB, sizeof small_info);
  small_info.struct_size = 48; /* the first release's quill_model_info */
  OK(quill_model_info_get(model, &small_info));
  CHECK(small_info.vocab_size == 1000 && small_info.struct_size == 48 && small_info.file_bytes == 0xABABABABABABABABull,
        "first-release info: fields past its 48 bytes untouched");

  /* The thread-teardown path of quill_last_error. */
  CHECK(pthread_key_create(&teardown_key, on_thread_teardown) == 0, "key");
  pthread_t th;
  CHECK(pthread_create(&th, NULL, thread_that_fails, NULL) == 0, "thread");
  pthread_join(th, NULL);
  CHECK(teardown_message != NULL, "quill_last_error answered during thread teardown");

  /* Bad input: a status and a message, never a crash. */
  quill_model *bad = NULL;
  CHECK(quill_model_open(NULL, NULL, &bad) == QUILL_ERR_INVALID_ARGUMENT && strlen(quill_last_error()) > 0, "NULL path");
  CHECK(quill_model_open("/nonexistent/model.quill", NULL, &bad) == QUILL_ERR_IO, "missing file");
  CHECK(quill_model_open(argv[0], NULL, &bad) != QUILL_OK && bad == NULL, "not a model: %s", quill_last_error());
  CHECK(quill_tokenize(model, "\xff\xfe", 1, ids, 256, &n_ids) == QUILL_ERR_INVALID_ARGUMENT, "invalid UTF-8");
  uint32_t far = 123456;
  CHECK(quill_detokenize(model, &far, 1, 1, back, sizeof back, &back_len) == QUILL_ERR_INVALID_ARGUMENT, "id out of range");
  quill_session_params small = sp;
  small.struct_size = 8;
  quill_session *s2 = NULL;
  CHECK(quill_session_new(model, &small, &s2) == QUILL_ERR_INVALID_ARGUMENT, "wrong struct_size");
  /* A caller built against the first header (no max_memory, struct_size 24) still works. */
  small = sp;
  small.struct_size = 24;
  small.max_memory = 1; /* past the caller's struct: never read */
  CHECK(quill_session_new(model, &small, &s2) == QUILL_OK, "first-ABI struct_size: %s", quill_last_error());
  quill_session_free(s2);
  s2 = NULL;
  small = sp;
  small.max_memory = 1 << 20; /* 1 MiB cannot hold this session */
  CHECK(quill_session_new(model, &small, &s2) == QUILL_ERR_OUT_OF_MEMORY && s2 == NULL, "memory budget");
  small = sp;
  small.max_batch = 0;
  CHECK(quill_session_new(model, &small, &s2) == QUILL_ERR_INVALID_ARGUMENT && s2 == NULL, "zero batch");
  CHECK(quill_generate_ids(NULL, inputs, lens, 1, &gp, NULL, NULL, &r) == QUILL_ERR_INVALID_ARGUMENT, "NULL session");
  CHECK(quill_generate_ids(session, inputs, lens, 3, &gp, NULL, NULL, &r) == QUILL_ERR_INVALID_ARGUMENT, "batch above the limit");
  CHECK(quill_result_ids(NULL, 0, 0, &out_ids, &n_out) == QUILL_ERR_INVALID_ARGUMENT, "NULL result");
  CHECK(quill_session_cancel(NULL) == QUILL_ERR_INVALID_ARGUMENT, "NULL cancel");
  CHECK(quill_model_open_memory(NULL, 10, NULL, &bad) == QUILL_ERR_INVALID_ARGUMENT, "NULL memory");
  unsigned char junk[64] = {0};
  CHECK(quill_model_open_memory(junk, sizeof junk, NULL, &bad) == QUILL_ERR_FORMAT, "junk bytes");
  CHECK(quill_model_info_get(model, NULL) == QUILL_ERR_INVALID_ARGUMENT, "NULL info");
  quill_model_info tiny = {.struct_size = 4};
  CHECK(quill_model_info_get(model, &tiny) == QUILL_ERR_INVALID_ARGUMENT, "info struct_size");
  CHECK(quill_model_params_init(NULL, sizeof mp) == QUILL_ERR_INVALID_ARGUMENT, "NULL model params");
  CHECK(quill_session_params_init(NULL, sizeof sp) == QUILL_ERR_INVALID_ARGUMENT, "NULL session params");
  CHECK(quill_generate_params_init(model, NULL, sizeof gp) == QUILL_ERR_INVALID_ARGUMENT, "NULL generate params");
  CHECK((quill_session_default_params)(NULL) == QUILL_ERR_INVALID_ARGUMENT, "NULL to the first release's function");
  CHECK(quill_model_default_params(NULL) == QUILL_ERR_INVALID_ARGUMENT, "NULL through the macro");
  CHECK(quill_session_default_params(NULL) == QUILL_ERR_INVALID_ARGUMENT, "NULL through the macro");
  CHECK(quill_generate_default_params(model, NULL) == QUILL_ERR_INVALID_ARGUMENT, "NULL through the macro");
  CHECK(quill_tokenize(model, NULL, 1, ids, 256, &n_ids) == QUILL_ERR_INVALID_ARGUMENT, "NULL text");
  CHECK(quill_detokenize(model, NULL, 3, 1, back, sizeof back, &back_len) == QUILL_ERR_INVALID_ARGUMENT, "NULL ids");
  /* A wrong count is refused before anything is read past the caller's array. */
  CHECK(quill_detokenize(model, ids, (size_t)-1 / 8, 1, back, sizeof back, &back_len) == QUILL_ERR_INVALID_ARGUMENT,
        "absurd id count");
  const char *bad_texts[1] = {"\xc3\x28"};
  gp.max_new_tokens = 4;
  CHECK(quill_generate_text(session, bad_texts, 1, &gp, NULL, NULL, &r) == QUILL_ERR_INVALID_ARGUMENT, "bad UTF-8 input");
  /* Nothing to translate is an error that says so, not an answer made of nothing. */
  const char *empty_texts[1] = {" \t\n"};
  CHECK(quill_generate_text(session, empty_texts, 1, &gp, NULL, NULL, &r) == QUILL_ERR_INVALID_ARGUMENT &&
            strstr(quill_last_error(), "texts[0] is empty") != NULL,
        "empty input");
  CHECK(quill_session_step(session, &start, 2) == QUILL_ERR_INVALID_ARGUMENT, "step with the wrong count");
  CHECK(quill_session_logits(session, NULL, &rows, &vocab) == QUILL_ERR_INVALID_ARGUMENT, "NULL logits");
  OK(quill_generate_ids(session, inputs, lens, 1, &gp, NULL, NULL, &r));
  float sc;
  CHECK(quill_result_score(r, 0, 7, &sc) == QUILL_ERR_INVALID_ARGUMENT, "hypothesis out of range");
  CHECK(quill_result_hypotheses(r, 9) == 0 && quill_result_inputs(NULL) == 0, "counts out of range");
  quill_result_free(r);
  CHECK(quill_chat_turn(session, "w5", &gp, NULL, NULL, &r) == QUILL_ERR_INVALID_ARGUMENT, "chat needs a decoder-only model");
  CHECK(quill_chat_turn(session, NULL, &gp, NULL, NULL, &r) == QUILL_ERR_INVALID_ARGUMENT, "chat with NULL text");
  CHECK(quill_session_reset(NULL) == QUILL_ERR_INVALID_ARGUMENT, "reset NULL");
  CHECK(quill_set_log_callback(NULL, NULL) == QUILL_OK, "log callback reset");
  quill_model_free(NULL);
  quill_session_free(NULL);
  quill_result_free(NULL);

  quill_session_free(session);
  quill_model_free(model);
  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("C API: all checks passed\n");
  return 0;
}
