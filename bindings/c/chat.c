/* Chat with a decoder-only model: one message per line on standard input; replies stream. The
 * session keeps the conversation's KV cache, so each turn only prefills its own tokens.
 *
 *   cc chat.c $(pkg-config --cflags --libs quill) -o chat
 *   ./chat model.quill */
#include <quill.h>
#include <stdio.h>
#include <string.h>

static int32_t print_piece(void *user, size_t input, const uint32_t *ids, size_t n, const char *text, size_t len) {
  (void)user; (void)input; (void)ids; (void)n;
  fwrite(text, 1, len, stdout);
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s MODEL\n", argv[0]);
    return 2;
  }
  quill_model *model = NULL;
  quill_session *session = NULL;
  quill_session_params sp;
  quill_generate_params gp;
  char line[4096];
  int rc = 1;
  if (quill_model_open(argv[1], NULL, &model) != QUILL_OK) goto fail;
  quill_session_default_params(&sp);
  if (quill_session_new(model, &sp, &session) != QUILL_OK) goto fail;
  quill_generate_default_params(model, &gp);
  gp.max_new_tokens = 32;
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    quill_result *reply = NULL;
    if (quill_chat_turn(session, line, &gp, print_piece, NULL, &reply) != QUILL_OK) goto fail;
    printf("\n");
    quill_result_free(reply);
  }
  rc = 0;
  goto done;
fail:
  fprintf(stderr, "quill: %s\n", quill_last_error());
done:
  quill_session_free(session);
  quill_model_free(model);
  return rc;
}
