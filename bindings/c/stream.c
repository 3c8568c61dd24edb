/* Stream a generation as it happens, with beam search: text appears as soon as every hypothesis
 * that can still win agrees on it, and is never taken back.
 *
 *   cc stream.c $(pkg-config --cflags --libs quill) -o stream
 *   ./stream model.quill "Open the file" [beams] */
#include <quill.h>
#include <stdio.h>
#include <stdlib.h>

static int32_t print_piece(void *user, size_t input, const uint32_t *ids, size_t n_ids, const char *text,
                           size_t text_len) {
  (void)user; (void)input; (void)ids; (void)n_ids;
  fwrite(text, 1, text_len, stdout);
  fflush(stdout);
  return 0; /* nonzero would stop the generation */
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL TEXT [BEAMS]\n", argv[0]);
    return 2;
  }
  unsigned beams = argc > 3 ? (unsigned)atoi(argv[3]) : 4;
  quill_model *model = NULL;
  quill_session *session = NULL;
  quill_result *result = NULL;
  quill_session_params sp;
  quill_generate_params gp;
  const char *inputs[1] = {argv[2]};
  int rc = 1;
  if (quill_model_open(argv[1], NULL, &model) != QUILL_OK) goto fail;
  quill_session_default_params(&sp);
  sp.beams = beams;
  if (quill_session_new(model, &sp, &session) != QUILL_OK) goto fail;
  quill_generate_default_params(model, &gp);
  gp.beams = beams;
  gp.max_new_tokens = 64;
  if (quill_generate_text(session, inputs, 1, &gp, print_piece, NULL, &result) != QUILL_OK) goto fail;
  printf("\n");
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "quill: %s\n", quill_last_error());
done:
  quill_result_free(result);
  quill_session_free(session);
  quill_model_free(model);
  return rc;
}
