/* Your own decoding loop over quill's low-level calls: start (encode the source, or prefill the
 * prompt), then step and read the logits until an end-of-sequence id, taking the most likely
 * token each time (greedy). For a seq2seq model the decoder starts from its decoder start id;
 * for a decoder-only model the prompt's prefill already gives the first logits.
 *
 *   lowlevel MODEL "text" [MAX_NEW_TOKENS]    prints the generated ids, comma-separated
 *
 * quill_generate_ids does the same with beams, sampling, penalties and streaming; this loop is
 * for callers with their own strategy (constrained decoding, a custom sampler, scoring).
 * tests/c_api.rs checks that it gives quill_generate_ids' greedy ids. */
#include <quill.h>

#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                               \
  do {                                                            \
    quill_status st_ = (call);                                    \
    if (st_ != QUILL_OK) {                                        \
      fprintf(stderr, "%s: %s\n", #call, quill_last_error());     \
      return 1;                                                   \
    }                                                             \
  } while (0)

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL TEXT [MAX_NEW_TOKENS]\n", argv[0]);
    return 2;
  }
  size_t max_new = argc > 3 ? (size_t)strtoul(argv[3], NULL, 10) : 32;
  quill_model *model = NULL;
  CHECK(quill_model_open(argv[1], NULL, &model));
  quill_model_info info = {.struct_size = sizeof info};
  CHECK(quill_model_info_get(model, &info));
  uint32_t eos[8];
  size_t n_eos = 0;
  CHECK(quill_model_eos_ids(model, eos, 8, &n_eos));

  /* One sequence, one beam; the lengths fitted to the model. */
  quill_session_params sp;
  CHECK(quill_session_default_params(&sp));
  sp.beams = 1;
  quill_session *session = NULL;
  CHECK(quill_session_new(model, &sp, &session));
  quill_session_params limits = {.struct_size = sizeof limits};
  CHECK(quill_session_limits(session, &limits));
  if (max_new > limits.max_new_tokens) max_new = limits.max_new_tokens;

  uint32_t src[1024];
  size_t n_src = 0;
  CHECK(quill_tokenize(model, argv[2], 1, src, 1024, &n_src));
  const uint32_t *inputs[1] = {src};
  CHECK(quill_session_start(session, inputs, &n_src, 1));
  if (info.decoder_start_id != QUILL_NO_ID) {
    /* Seq2seq: the encoder ran; feed the decoder its start id for the first logits. */
    CHECK(quill_session_step(session, &info.decoder_start_id, 1));
  }
  for (size_t t = 0; t < max_new; t++) {
    const float *logits = NULL;
    size_t rows = 0, vocab = 0;
    CHECK(quill_session_logits(session, &logits, &rows, &vocab));
    uint32_t best = 0;
    for (uint32_t v = 1; v < vocab; v++)
      if (logits[v] > logits[best]) best = v;
    printf(t ? ",%u" : "%u", best);
    int done = 0;
    for (size_t e = 0; e < n_eos; e++) done |= best == eos[e];
    if (done || t + 1 == max_new) break;
    CHECK(quill_session_step(session, &best, 1));
  }
  printf("\n");
  quill_session_free(session);
  quill_model_free(model);
  return 0;
}
