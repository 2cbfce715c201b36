/* Minimal libreason C example: load a model, stream a completion, score it.
 * Usage: example_c_generate MODEL_DIR [PROMPT]
 * Build:  cc generate.c $(pkg-config --cflags --libs reason)   (or via this project's CMake) */
#include <reason.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int on_token(void* user, size_t request, int32_t token, float logprob, const char* text) {
  (void)request; (void)token; (void)logprob;
  int* count = (int*)user;
  ++*count;
  fputs(text, stdout);
  fflush(stdout);
  return 0; /* 0 = continue */
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL_DIR [PROMPT]\n", argv[0]);
    return 2;
  }
  const char* prompt = argc > 2 ? argv[2] : "The answer is";
  printf("libreason %s\n", reason_version());

  reason_model* model = NULL;
  if (reason_model_load(&model, argv[1], NULL) != REASON_OK) {
    fprintf(stderr, "error: %s\n", reason_last_error());
    return 1;
  }

  reason_sampling_options opts = REASON_SAMPLING_OPTIONS_INIT;
  opts.temperature = 0.0f; /* greedy: reproducible */
  opts.max_new_tokens = 16;
  opts.ignore_eos = 1;

  reason_generation* gen = NULL;
  int streamed = 0;
  printf("%s", prompt);
  if (reason_generate_text(&gen, model, &prompt, 1, &opts, on_token, &streamed) != REASON_OK) {
    fprintf(stderr, "\nerror: %s\n", reason_last_error());
    reason_model_free(model);
    return 1;
  }
  const reason_completion* c = reason_generation_get(gen, 0);
  printf("\n[%zu tokens, %d streamed, finish=%d, first logprob %.4f]\n", c->n_tokens, streamed,
         (int)c->finish_reason, c->n_tokens ? c->logprobs[0] : 0.0f);

  /* Score the prompt + completion by teacher forcing. */
  const reason_tokenizer* tok = reason_model_tokenizer(model);
  int32_t* ids = NULL;
  size_t n = 0;
  if (reason_tokenizer_encode(&ids, &n, tok, prompt, strlen(prompt), 1) == REASON_OK && n >= 2) {
    float* lp = (float*)malloc((n - 1) * sizeof(float));
    if (reason_score(lp, model, ids, n) == REASON_OK) printf("prompt logprob of token 1: %.4f\n", lp[0]);
    free(lp);
  }
  reason_free(ids);

  /* A bad path turns into a status and a message, never a crash. */
  reason_model* bad = NULL;
  reason_status st = reason_model_load(&bad, "/nonexistent/model", NULL);
  printf("bad path -> %s: %s\n", reason_status_name(st), reason_last_error());

  /* c points into gen: read what is needed before freeing it. */
  const int ok = streamed == (int)c->n_tokens;
  reason_generation_free(gen);
  reason_model_free(model);
  return ok ? 0 : 1;
}
