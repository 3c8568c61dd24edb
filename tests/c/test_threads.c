/* One model, 8 threads, each with its own session, 25 generations each: every output equals the
 * single-threaded run's. Built by tests/c_api.rs (also with AddressSanitizer when clang has it).
 *
 *   test_threads MODEL */
#include <quill.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define THREADS 8
#define RUNS 25
#define MAX_OUT 32

static const quill_model *model;
static uint32_t reference[RUNS][MAX_OUT];
static size_t reference_len[RUNS];

/* Run r: a different input and strategy per run (greedy, beam 3, seeded sampling). */
static quill_status run(quill_session *s, int r, uint32_t *out, size_t *n) {
  uint32_t input[12];
  for (int i = 0; i < 11; i++) input[i] = (uint32_t)(10 + (r * 37 + i * 11) % 900);
  input[11] = 0;
  const uint32_t *inputs[1] = {input};
  size_t lens[1] = {12};
  quill_generate_params gp;
  quill_status st = quill_generate_default_params(model, &gp);
  if (st != QUILL_OK) return st;
  gp.max_new_tokens = 16;
  if (r % 3 == 1) {
    gp.beams = 3;
  } else if (r % 3 == 2) {
    gp.sample = 1;
    gp.seed = (uint64_t)r;
    gp.top_p = 0.9f;
  }
  quill_result *res = NULL;
  st = quill_generate_ids(s, inputs, lens, 1, &gp, NULL, NULL, &res);
  if (st != QUILL_OK) return st;
  const uint32_t *ids;
  st = quill_result_ids(res, 0, 0, &ids, n);
  if (st == QUILL_OK) memcpy(out, ids, *n * sizeof *ids);
  quill_result_free(res);
  return st;
}

static quill_session *new_session(void) {
  quill_session_params sp;
  quill_session_default_params(&sp);
  sp.max_input_len = 16;
  sp.max_new_tokens = MAX_OUT;
  sp.beams = 3;
  quill_session *s = NULL;
  quill_session_new(model, &sp, &s);
  return s;
}

static void *worker(void *arg) {
  long id = (long)arg;
  quill_session *s = new_session();
  long bad = 0;
  for (int k = 0; k < RUNS; k++) {
    int r = (int)((k + id * 7) % RUNS); /* threads walk the runs in different orders */
    uint32_t out[MAX_OUT];
    size_t n = 0;
    if (run(s, r, out, &n) != QUILL_OK || n != reference_len[r] || memcmp(out, reference[r], n * sizeof *out) != 0) {
      fprintf(stderr, "thread %ld run %d differs (%s)\n", id, r, quill_last_error());
      bad++;
    }
  }
  quill_session_free(s);
  return (void *)bad;
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  quill_model_params mp;
  quill_model_default_params(&mp);
  mp.threads = 1;
  quill_model *m = NULL;
  if (quill_model_open(argv[1], &mp, &m) != QUILL_OK) {
    fprintf(stderr, "open: %s\n", quill_last_error());
    return 1;
  }
  model = m;
  quill_session *s = new_session();
  for (int r = 0; r < RUNS; r++) {
    if (run(s, r, reference[r], &reference_len[r]) != QUILL_OK) {
      fprintf(stderr, "reference run %d: %s\n", r, quill_last_error());
      return 1;
    }
  }
  quill_session_free(s);
  pthread_t t[THREADS];
  for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)i);
  long bad = 0;
  for (int i = 0; i < THREADS; i++) {
    void *ret;
    pthread_join(t[i], &ret);
    bad += (long)ret;
  }
  quill_model_free(m);
  if (bad) {
    fprintf(stderr, "%ld outputs differ\n", bad);
    return 1;
  }
  printf("threads: %d x %d generations identical to the sequential run\n", THREADS, RUNS);
  return 0;
}
