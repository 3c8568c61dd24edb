/* A program written against the first released header, tests/c/abi_v1/quill.h (commit e946b24,
 * ABI 1), compiled against it and run against today's library by tests/c_api.rs (also under
 * AddressSanitizer). It uses the API as that header documented it: structs filled by
 * quill_*_default_params without setting struct_size first. Its structs are smaller than
 * today's (quill_model_params 16 bytes, quill_session_params 24, quill_model_info 48), and each
 * lives in a heap block of exactly its size, so a library that writes or reads past them is
 * caught by AddressSanitizer or valgrind.
 *
 *   test_abi_v1 MODEL.quill "SOURCE TEXT" EXPECTED_GREEDY_IDS(comma-separated)
 */
#include <quill.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(quill_model_params) == 16, "this is the first header");
_Static_assert(sizeof(quill_session_params) == 24, "this is the first header");
_Static_assert(sizeof(quill_model_info) == 48, "this is the first header");
_Static_assert(sizeof(quill_generate_params) == 64, "this is the first header");

static int failures = 0;
#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, " (last error: %s)\n", quill_last_error());              \
      failures++;                                                              \
    }                                                                          \
  } while (0)
#define OK(call) CHECK((call) == QUILL_OK, "%s", #call)

/* A heap block of exactly `size` bytes, so that a write past it is a heap-buffer-overflow
 * (ASan, valgrind), filled with junk as an uninitialized struct would be. */
static void *exact(size_t size) {
  unsigned char *p = malloc(size);
  memset(p, 0xC3, size);
  return p;
}

static size_t parse_ids(const char *s, uint32_t *out, size_t cap) {
  size_t n = 0;
  while (*s && n < cap) {
    out[n++] = (uint32_t)strtoul(s, (char **)&s, 10);
    if (*s == ',') s++;
  }
  return n;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s MODEL TEXT EXPECTED_IDS\n", argv[0]);
    return 2;
  }
  uint32_t expected[256];
  size_t n_expected = parse_ids(argv[3], expected, 256);
  CHECK(quill_abi_version() == QUILL_ABI_VERSION, "the ABI did not change: %u", quill_abi_version());

  /* The documented sequence of the first release, with the struct_size field never set by us. */
  quill_model_params *mp = exact(sizeof *mp);
  OK(quill_model_default_params(mp));
  CHECK(mp->struct_size == sizeof *mp, "model params struct_size %zu", mp->struct_size);
  mp->threads = 1;
  quill_model *model = NULL;
  OK(quill_model_open(argv[1], mp, &model));
  free(mp);
  if (!model) return 1;

  quill_model_info *info = exact(sizeof *info);
  info->struct_size = sizeof *info;
  OK(quill_model_info_get(model, info));
  CHECK(info->vocab_size == 1000 && info->arch == 0 && info->has_tokenizer && info->isa != NULL, "info");
  free(info);

  quill_session_params *sp = exact(sizeof *sp);
  OK(quill_session_default_params(sp));
  CHECK(sp->struct_size == sizeof *sp, "session params struct_size %zu", sp->struct_size);
  sp->max_batch = 2;
  sp->max_input_len = 64;
  sp->max_new_tokens = 32;
  sp->beams = 4;
  quill_session *session = NULL;
  OK(quill_session_new(model, sp, &session));
  free(sp);
  if (!session) return 1;

  quill_generate_params *gp = exact(sizeof *gp);
  OK(quill_generate_default_params(model, gp));
  gp->beams = 1;
  gp->max_new_tokens = 24;

  uint32_t ids[256];
  size_t n_ids = 0;
  OK(quill_tokenize(model, argv[2], 1, ids, 256, &n_ids));
  const uint32_t *inputs[1] = {ids};
  size_t lens[1] = {n_ids};
  quill_result *r = NULL;
  OK(quill_generate_ids(session, inputs, lens, 1, gp, NULL, NULL, &r));
  const uint32_t *out = NULL;
  size_t n_out = 0;
  OK(quill_result_ids(r, 0, 0, &out, &n_out));
  CHECK(n_out == n_expected && memcmp(out, expected, n_out * sizeof *out) == 0, "greedy ids equal the golden");
  quill_result_free(r);

  const char *texts[1] = {argv[2]};
  OK(quill_generate_text(session, texts, 1, gp, NULL, NULL, &r));
  const char *t = NULL;
  OK(quill_result_text(r, 0, 0, &t));
  CHECK(t && strlen(t) > 0, "text");
  quill_result_free(r);
  free(gp);

  /* The low-level loop of the first release. */
  OK(quill_session_start(session, inputs, lens, 1));
  uint32_t start = 999;
  OK(quill_session_step(session, &start, 1));
  const float *logits = NULL;
  size_t rows = 0, vocab = 0;
  OK(quill_session_logits(session, &logits, &rows, &vocab));
  CHECK(rows == 1 && vocab == 1000, "logits %zu x %zu", rows, vocab);

  quill_session_free(session);
  quill_model_free(model);
  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("first-header program: all checks passed\n");
  return 0;
}
