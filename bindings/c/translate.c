/* Translate (or continue) one text with a quill model: the smallest complete C program.
 *
 *   cc translate.c $(pkg-config --cflags --libs quill) -o translate
 *   ./translate model.quill "Open the file" */
#include <quill.h>
#include <stdio.h>

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s MODEL TEXT\n", argv[0]);
    return 2;
  }
  if (quill_abi_version() != QUILL_ABI_VERSION) {
    fprintf(stderr, "libquill ABI %u, header %u\n", quill_abi_version(), QUILL_ABI_VERSION);
    return 1;
  }
  quill_model *model = NULL;
  quill_session *session = NULL;
  quill_result *result = NULL;
  const char *text = NULL;
  const char *inputs[1] = {argv[2]};
  int rc = 1;
  if (quill_model_open(argv[1], NULL, &model) != QUILL_OK) goto fail;
  if (quill_session_new(model, NULL, &session) != QUILL_OK) goto fail;
  if (quill_generate_text(session, inputs, 1, NULL, NULL, NULL, &result) != QUILL_OK) goto fail;
  if (quill_result_text(result, 0, 0, &text) != QUILL_OK) goto fail;
  printf("%s\n", text);
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
