/*
 * quill_jni.c — the JNI glue of the Java binding (bindings/java/src/dev/quill), over the C API
 * of include/quill.h. Built into libquill_jni.so, linked with libquill (bindings/java/build.sh).
 *
 * Rules kept here:
 * - Every failing quill call throws dev.quill.QuillException with its status and the message of
 *   quill_last_error(), read in the same native call as the failure (the message is per OS
 *   thread, and a Java thread is only known to stay on one OS thread for the length of a call).
 * - Everything allocated is freed on every path; a result is freed before the exception of a
 *   stream callback is rethrown.
 * - A Java exception never crosses quill: the stream callback catches it, stops the generation
 *   (returns nonzero) and it is rethrown once quill has returned.
 * - Text crosses as standard UTF-8 (not JNI's modified UTF-8, which encodes characters outside
 *   the BMP and U+0000 differently): converted here from and to UTF-16.
 * - Nothing is pinned across a quill call: Java arrays are copied in and out.
 *
 * Handles: a model handle is the quill_model pointer; a session handle points at a jq_session,
 * which holds the quill_session and the model's decoding defaults (so that a session keeps
 * working after its model is closed, as in C). The Java classes guarantee that no handle is
 * used after it is freed, and that a session runs one call at a time (cancel excepted).
 */
#include <jni.h>
#include <quill.h>

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef QUILL_JNI_CHECK_HEADER
/* The prototypes javac -h wrote for dev.quill.Native: a signature that differs fails the build. */
#include "dev_quill_Native.h"
#endif

/* ---- Classes and methods, looked up once in JNI_OnLoad (the class loader of the library's
 * loader; FindClass on other threads could not see the app's classes on Android). ---- */

static jclass g_quill_exception;     /* dev.quill.QuillException */
static jmethodID g_quill_exception_init;
static jclass g_hypothesis;          /* dev.quill.Hypothesis */
static jclass g_hypothesis_array;    /* dev.quill.Hypothesis[] */
static jmethodID g_hypothesis_init;
static jclass g_generation;          /* dev.quill.Generation */
static jmethodID g_generation_init;
static jmethodID g_stream_on_tokens; /* dev.quill.StreamCallback.onTokens */
static jmethodID g_add_suppressed;   /* Throwable.addSuppressed */
static jclass g_null_pointer;        /* java.lang.NullPointerException */
static jclass g_out_of_memory;       /* java.lang.OutOfMemoryError */
static jclass g_illegal_argument;    /* java.lang.IllegalArgumentException */

/* Fields of the packed option arrays (see GenerateOptions.pack and SessionOptions.pack):
 * element 0 is the mask of the fields the caller set, bit i-1 for element i. */
enum {
  GEN_MAX_NEW_TOKENS = 1,
  GEN_MIN_NEW_TOKENS,
  GEN_BEAMS,
  GEN_N_BEST,
  GEN_LENGTH_PENALTY,
  GEN_SAMPLE,
  GEN_TEMPERATURE,
  GEN_TOP_K,
  GEN_TOP_P,
  GEN_MIN_P,
  GEN_SEED,
  GEN_REPETITION_PENALTY,
  GEN_NO_REPEAT_NGRAM_SIZE,
  GEN_PACKED_LEN
};
enum { SES_MAX_BATCH = 1, SES_MAX_INPUT_LEN, SES_MAX_NEW_TOKENS, SES_BEAMS, SES_MAX_MEMORY, SES_PACKED_LEN };
/* ModelInfo's numbers, in the order ModelInfo's constructor reads them. */
enum {
  INFO_ARCH,
  INFO_VOCAB_SIZE,
  INFO_D_MODEL,
  INFO_ENCODER_LAYERS,
  INFO_DECODER_LAYERS,
  INFO_THREADS,
  INFO_HAS_TOKENIZER,
  INFO_FILE_BYTES,
  INFO_COPIED_BYTES,
  INFO_MAX_POSITIONS,
  INFO_BOS_ID,
  INFO_EOS_ID,
  INFO_PAD_ID,
  INFO_DECODER_START_ID,
  INFO_N_EOS_IDS,
  INFO_HAS_TARGET_TOKENIZER,
  INFO_LEN
};

#define IS_SET(mask, field) (((mask) >> ((field) - 1)) & 1)

/* A session handle. */
typedef struct {
  quill_session *session;
  /* quill_session_generate_params at creation (the model's defaults lowered to the session):
   * the base of every GenerateOptions. */
  quill_generate_params defaults;
} jq_session;

static jq_session *session_of(jlong handle) { return (jq_session *)(intptr_t)handle; }
static quill_model *model_of(jlong handle) { return (quill_model *)(intptr_t)handle; }

/* ---- Exceptions ---- */

static void throw_new(JNIEnv *env, jclass cls, const char *message) {
  if (!(*env)->ExceptionCheck(env)) (*env)->ThrowNew(env, cls, message);
}

static void delete_local(JNIEnv *env, jobject ref) {
  if (ref) (*env)->DeleteLocalRef(env, ref);
}

static jstring new_string_utf8(JNIEnv *env, const char *s, size_t len);

/* A QuillException (not thrown) for `status` with `message` (UTF-8); NULL with an exception
 * pending if it could not be made. Calls no quill function that could fail, so a message that
 * comes from quill_last_error() stays valid while it is used. */
static jthrowable new_quill_exception(JNIEnv *env, int status, const char *message) {
  const char *name = quill_status_str(status);
  jstring jname = new_string_utf8(env, name, strlen(name));
  if (!jname) return NULL;
  if (!message) message = "";
  jstring jmessage = new_string_utf8(env, message, strlen(message));
  jthrowable e = NULL;
  if (jmessage)
    e = (jthrowable)(*env)->NewObject(env, g_quill_exception, g_quill_exception_init, (jint)status, jname,
                                      jmessage);
  delete_local(env, jname);
  delete_local(env, jmessage);
  return e;
}

/* The exception for the quill call that just returned `status`, its message read now. */
static jthrowable quill_failure(JNIEnv *env, quill_status status) {
  return new_quill_exception(env, (int)status, quill_last_error());
}

static void throw_throwable(JNIEnv *env, jthrowable e) {
  if (e) {
    (*env)->Throw(env, e);
    (*env)->DeleteLocalRef(env, e);
  }
}

/* Throws the QuillException of the quill call that just returned `status` (not QUILL_OK). */
static void throw_status(JNIEnv *env, quill_status status) { throw_throwable(env, quill_failure(env, status)); }

/* Throws a QuillException made here (an argument quill would refuse too, found before the call). */
static void throw_invalid(JNIEnv *env, const char *message) {
  throw_throwable(env, new_quill_exception(env, QUILL_ERR_INVALID_ARGUMENT, message));
}

static void throw_oom(JNIEnv *env) { throw_new(env, g_out_of_memory, "quill_jni: out of native memory"); }

/* ---- Text: Java's UTF-16 <-> standard UTF-8 ---- */

/* A Java string as NUL-terminated UTF-8 (free it), `*len` its bytes; NULL with an exception
 * pending: NullPointerException for null, QuillException (QUILL_ERR_INVALID_ARGUMENT) for a
 * U+0000 (it would cut the C string short) or an unpaired surrogate (not UTF-8-encodable). */
static char *utf8_of(JNIEnv *env, jstring s, const char *what, size_t *len) {
  if (!s) {
    throw_new(env, g_null_pointer, what);
    return NULL;
  }
  jsize n = (*env)->GetStringLength(env, s);
  /* A UTF-16 unit takes at most 3 bytes (a surrogate pair, two units, takes 4). */
  if ((size_t)n > (SIZE_MAX - 1) / 3) {
    throw_oom(env);
    return NULL;
  }
  char *out = malloc((size_t)n * 3 + 1);
  if (!out) {
    throw_oom(env);
    return NULL;
  }
  const jchar *u = (*env)->GetStringChars(env, s, NULL);
  if (!u) { /* OutOfMemoryError pending */
    free(out);
    return NULL;
  }
  size_t o = 0;
  const char *bad = NULL;
  for (jsize i = 0; i < n && !bad; i++) {
    uint32_t c = u[i];
    if (c == 0) {
      bad = "text contains U+0000, which a C string cannot hold";
    } else if (c < 0x80) {
      out[o++] = (char)c;
    } else if (c < 0x800) {
      out[o++] = (char)(0xC0 | (c >> 6));
      out[o++] = (char)(0x80 | (c & 0x3F));
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      if (c <= 0xDBFF && i + 1 < n && u[i + 1] >= 0xDC00 && u[i + 1] <= 0xDFFF) {
        uint32_t cp = 0x10000 + ((c - 0xD800) << 10) + (uint32_t)(u[i + 1] - 0xDC00);
        i++;
        out[o++] = (char)(0xF0 | (cp >> 18));
        out[o++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[o++] = (char)(0x80 | (cp & 0x3F));
      } else {
        bad = "text is not valid UTF-16 (an unpaired surrogate), so it has no UTF-8 form";
      }
    } else {
      out[o++] = (char)(0xE0 | (c >> 12));
      out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
      out[o++] = (char)(0x80 | (c & 0x3F));
    }
  }
  (*env)->ReleaseStringChars(env, s, u);
  if (bad) {
    free(out);
    throw_invalid(env, bad);
    return NULL;
  }
  out[o] = '\0';
  if (len) *len = o;
  return out;
}

static int continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

/* A Java string of `len` bytes of UTF-8 at `s` (bytes that are not UTF-8 become U+FFFD, one per
 * byte; quill hands out valid UTF-8); NULL with an exception pending. */
static jstring new_string_utf8(JNIEnv *env, const char *s, size_t len) {
  /* Each byte yields at most one UTF-16 unit (4 bytes yield 2). */
  if (len > (size_t)INT_MAX) {
    throw_oom(env);
    return NULL;
  }
  jchar small[256] = {0}; /* (zeroed: an empty text reads none of it, but GCC cannot tell) */
  jchar *u = small;
  if (len > sizeof small / sizeof small[0]) {
    u = malloc(len * sizeof *u);
    if (!u) {
      throw_oom(env);
      return NULL;
    }
  }
  const unsigned char *b = (const unsigned char *)s;
  size_t i = 0, o = 0;
  while (i < len) {
    unsigned char c = b[i];
    if (c < 0x80) {
      u[o++] = c;
      i++;
    } else if (c >= 0xC2 && c <= 0xDF && i + 1 < len && continuation(b[i + 1])) {
      u[o++] = (jchar)(((c & 0x1F) << 6) | (b[i + 1] & 0x3F));
      i += 2;
    } else if (c >= 0xE0 && c <= 0xEF && i + 2 < len && continuation(b[i + 1]) && continuation(b[i + 2]) &&
               !(c == 0xE0 && b[i + 1] < 0xA0) && !(c == 0xED && b[i + 1] >= 0xA0)) {
      u[o++] = (jchar)(((c & 0x0F) << 12) | ((b[i + 1] & 0x3F) << 6) | (b[i + 2] & 0x3F));
      i += 3;
    } else if (c >= 0xF0 && c <= 0xF4 && i + 3 < len && continuation(b[i + 1]) && continuation(b[i + 2]) &&
               continuation(b[i + 3]) && !(c == 0xF0 && b[i + 1] < 0x90) && !(c == 0xF4 && b[i + 1] >= 0x90)) {
      uint32_t cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(b[i + 1] & 0x3F) << 12) |
                    ((uint32_t)(b[i + 2] & 0x3F) << 6) | (uint32_t)(b[i + 3] & 0x3F);
      cp -= 0x10000;
      u[o++] = (jchar)(0xD800 + (cp >> 10));
      u[o++] = (jchar)(0xDC00 + (cp & 0x3FF));
      i += 4;
    } else {
      u[o++] = 0xFFFD;
      i++;
    }
  }
  jstring r = (*env)->NewString(env, u, (jsize)o);
  if (u != small) free(u);
  return r;
}

/* ---- Arrays ---- */

/* A Java int[] of `n` ids; NULL with an exception pending. */
static jintArray new_int_array(JNIEnv *env, const uint32_t *ids, size_t n) {
  if (n > (size_t)INT_MAX) {
    throw_oom(env);
    return NULL;
  }
  jintArray a = (*env)->NewIntArray(env, (jsize)n);
  if (a && n > 0) {
    /* uint32_t and jint (int32_t) may alias each other. */
    (*env)->SetIntArrayRegion(env, a, 0, (jsize)n, (const jint *)ids);
    if ((*env)->ExceptionCheck(env)) {
      (*env)->DeleteLocalRef(env, a);
      return NULL;
    }
  }
  return a;
}

/* A copy of a Java int[] (free it; at least one element allocated so that it is never NULL);
 * NULL with an exception pending. */
static uint32_t *copy_ids(JNIEnv *env, jintArray a, const char *what, size_t *n) {
  if (!a) {
    throw_new(env, g_null_pointer, what);
    return NULL;
  }
  jsize len = (*env)->GetArrayLength(env, a);
  uint32_t *ids = malloc(((size_t)len + 1) * sizeof *ids);
  if (!ids) {
    throw_oom(env);
    return NULL;
  }
  if (len > 0) {
    (*env)->GetIntArrayRegion(env, a, 0, len, (jint *)ids);
    if ((*env)->ExceptionCheck(env)) {
      free(ids);
      return NULL;
    }
  }
  *n = (size_t)len;
  return ids;
}

/* ---- Decoding parameters ---- */

static float float_of_bits(jlong bits) {
  uint32_t u = (uint32_t)bits;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* `*p` = the session's defaults (quill_session_generate_params: the model's, lowered to the
 * session) with the fields the caller set (a GenerateOptions packed into `packed`); for a chat
 * turn an unset `beams` is 1 (quill_chat_turn's NULL params). 0 with an exception pending on
 * failure. */
static int read_generate_params(JNIEnv *env, const jq_session *js, jlongArray packed, int chat,
                                quill_generate_params *p) {
  jlong v[GEN_PACKED_LEN];
  if ((*env)->GetArrayLength(env, packed) != GEN_PACKED_LEN) {
    throw_new(env, g_illegal_argument, "quill_jni: packed GenerateOptions of the wrong length");
    return 0;
  }
  (*env)->GetLongArrayRegion(env, packed, 0, GEN_PACKED_LEN, v);
  if ((*env)->ExceptionCheck(env)) return 0;
  jlong mask = v[0];
  *p = js->defaults;
  if (IS_SET(mask, GEN_MAX_NEW_TOKENS)) p->max_new_tokens = (uint32_t)v[GEN_MAX_NEW_TOKENS];
  if (IS_SET(mask, GEN_MIN_NEW_TOKENS)) p->min_new_tokens = (uint32_t)v[GEN_MIN_NEW_TOKENS];
  if (IS_SET(mask, GEN_BEAMS)) p->beams = (uint32_t)v[GEN_BEAMS];
  if (IS_SET(mask, GEN_N_BEST)) p->n_best = (uint32_t)v[GEN_N_BEST];
  if (IS_SET(mask, GEN_LENGTH_PENALTY)) p->length_penalty = float_of_bits(v[GEN_LENGTH_PENALTY]);
  if (IS_SET(mask, GEN_SAMPLE)) p->sample = v[GEN_SAMPLE] != 0;
  if (IS_SET(mask, GEN_TEMPERATURE)) p->temperature = float_of_bits(v[GEN_TEMPERATURE]);
  if (IS_SET(mask, GEN_TOP_K)) p->top_k = (uint32_t)v[GEN_TOP_K];
  if (IS_SET(mask, GEN_TOP_P)) p->top_p = float_of_bits(v[GEN_TOP_P]);
  if (IS_SET(mask, GEN_MIN_P)) p->min_p = float_of_bits(v[GEN_MIN_P]);
  if (IS_SET(mask, GEN_SEED)) p->seed = (uint64_t)v[GEN_SEED];
  if (IS_SET(mask, GEN_REPETITION_PENALTY)) p->repetition_penalty = float_of_bits(v[GEN_REPETITION_PENALTY]);
  if (IS_SET(mask, GEN_NO_REPEAT_NGRAM_SIZE)) p->no_repeat_ngram_size = (uint32_t)v[GEN_NO_REPEAT_NGRAM_SIZE];
  if (chat && !IS_SET(mask, GEN_BEAMS)) {
    p->beams = 1;
    if (!IS_SET(mask, GEN_N_BEST)) p->n_best = 1;
  }
  return 1;
}

/* ---- Streaming ---- */

typedef struct {
  JNIEnv *env;
  jobject callback;    /* a StreamCallback */
  jthrowable thrown;   /* what the callback threw (a local reference), or NULL */
} stream_state;

/* The quill_stream_fn: calls the Java callback; an exception it throws stops the generation and
 * is kept to be rethrown after quill returns. */
static int32_t on_tokens(void *user, size_t input, const uint32_t *ids, size_t n_ids, const char *text,
                         size_t text_len) {
  stream_state *st = user;
  JNIEnv *env = st->env;
  if (st->thrown) return 1;
  jboolean go = JNI_FALSE;
  jstring jtext = NULL;
  jintArray jids = input <= (size_t)INT_MAX ? new_int_array(env, ids, n_ids) : NULL;
  if (jids && text) jtext = new_string_utf8(env, text, text_len);
  if (jids && (!text || jtext))
    go = (*env)->CallBooleanMethod(env, st->callback, g_stream_on_tokens, (jint)input, jids, jtext);
  if ((*env)->ExceptionCheck(env)) {
    st->thrown = (*env)->ExceptionOccurred(env);
    (*env)->ExceptionClear(env);
    go = JNI_FALSE;
  } else if (!jids) { /* input index past int: unreachable (inputs come from a Java array) */
    go = JNI_FALSE;
  }
  delete_local(env, jids);
  delete_local(env, jtext);
  return go ? 0 : 1;
}

/* ---- Results ---- */

/* A dev.quill.Generation read from `r`; NULL with an exception pending. */
static jobject read_result(JNIEnv *env, const quill_result *r, int with_text) {
  size_t n_inputs = quill_result_inputs(r);
  if (n_inputs > (size_t)INT_MAX) {
    throw_oom(env);
    return NULL;
  }
  jobjectArray outer = (*env)->NewObjectArray(env, (jsize)n_inputs, g_hypothesis_array, NULL);
  if (!outer) return NULL;
  for (size_t i = 0; i < n_inputs; i++) {
    size_t n_hyps = quill_result_hypotheses(r, i);
    if (n_hyps > (size_t)INT_MAX) {
      throw_oom(env);
      goto fail;
    }
    jobjectArray inner = (*env)->NewObjectArray(env, (jsize)n_hyps, g_hypothesis, NULL);
    if (!inner) goto fail;
    for (size_t h = 0; h < n_hyps; h++) {
      const uint32_t *ids = NULL;
      size_t n = 0;
      float score = 0;
      const char *text = NULL;
      quill_status s = quill_result_ids(r, i, h, &ids, &n);
      if (s == QUILL_OK) s = quill_result_score(r, i, h, &score);
      if (s == QUILL_OK && with_text) s = quill_result_text(r, i, h, &text);
      if (s != QUILL_OK) {
        throw_status(env, s);
        delete_local(env, inner);
        goto fail;
      }
      jintArray jids = new_int_array(env, ids, n);
      jstring jtext = NULL;
      if (jids && text) jtext = new_string_utf8(env, text, strlen(text));
      jobject hyp = NULL;
      if (jids && (!text || jtext))
        hyp = (*env)->NewObject(env, g_hypothesis, g_hypothesis_init, jids, jtext, (jfloat)score);
      delete_local(env, jids);
      delete_local(env, jtext);
      if (hyp) {
        (*env)->SetObjectArrayElement(env, inner, (jsize)h, hyp);
        (*env)->DeleteLocalRef(env, hyp);
      }
      if (!hyp || (*env)->ExceptionCheck(env)) {
        delete_local(env, inner);
        goto fail;
      }
    }
    (*env)->SetObjectArrayElement(env, outer, (jsize)i, inner);
    (*env)->DeleteLocalRef(env, inner);
    if ((*env)->ExceptionCheck(env)) goto fail;
  }
  jboolean stopped = quill_result_stopped(r) ? JNI_TRUE : JNI_FALSE;
  jobject gen = (*env)->NewObject(env, g_generation, g_generation_init, outer, stopped);
  (*env)->DeleteLocalRef(env, outer);
  return gen;
fail:
  (*env)->DeleteLocalRef(env, outer);
  return NULL;
}

/* After a generation returned `status` and `out`: reads the result, frees it (on every path),
 * then throws what has to be thrown — the callback's exception first (with a failure of quill
 * added to it as suppressed, if both happened), else quill's failure. */
static jobject finish_generation(JNIEnv *env, quill_status status, quill_result *out, stream_state *st,
                                 int with_text) {
  jthrowable failure = NULL;
  jobject gen = NULL;
  if (status != QUILL_OK)
    failure = quill_failure(env, status); /* NULL with OutOfMemoryError pending */
  else if (!st->thrown)
    gen = read_result(env, out, with_text);
  quill_result_free(out);
  if ((*env)->ExceptionCheck(env)) { /* from making the exception or reading the result */
    delete_local(env, failure);
    delete_local(env, st->thrown);
    delete_local(env, gen);
    return NULL;
  }
  if (st->thrown) {
    if (failure) {
      (*env)->CallVoidMethod(env, st->thrown, g_add_suppressed, failure);
      if ((*env)->ExceptionCheck(env)) (*env)->ExceptionClear(env);
      (*env)->DeleteLocalRef(env, failure);
    }
    throw_throwable(env, st->thrown);
    return NULL;
  }
  if (failure) {
    throw_throwable(env, failure);
    return NULL;
  }
  return gen;
}

/* ---- Library ---- */

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM *vm, void *reserved) {
  (void)reserved;
  JNIEnv *env = NULL;
  if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION_1_6) != JNI_OK) return JNI_ERR;
  struct {
    jclass *global;
    const char *name;
  } classes[] = {
      {&g_quill_exception, "dev/quill/QuillException"},
      {&g_hypothesis, "dev/quill/Hypothesis"},
      {&g_hypothesis_array, "[Ldev/quill/Hypothesis;"},
      {&g_generation, "dev/quill/Generation"},
      {&g_null_pointer, "java/lang/NullPointerException"},
      {&g_out_of_memory, "java/lang/OutOfMemoryError"},
      {&g_illegal_argument, "java/lang/IllegalArgumentException"},
  };
  for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
    jclass local = (*env)->FindClass(env, classes[i].name);
    if (!local) return JNI_ERR; /* NoClassDefFoundError pending */
    *classes[i].global = (jclass)(*env)->NewGlobalRef(env, local);
    (*env)->DeleteLocalRef(env, local);
    if (!*classes[i].global) return JNI_ERR;
  }
  g_quill_exception_init =
      (*env)->GetMethodID(env, g_quill_exception, "<init>", "(ILjava/lang/String;Ljava/lang/String;)V");
  if (!g_quill_exception_init) return JNI_ERR;
  g_hypothesis_init = (*env)->GetMethodID(env, g_hypothesis, "<init>", "([ILjava/lang/String;F)V");
  if (!g_hypothesis_init) return JNI_ERR;
  g_generation_init = (*env)->GetMethodID(env, g_generation, "<init>", "([[Ldev/quill/Hypothesis;Z)V");
  if (!g_generation_init) return JNI_ERR;
  jclass callback = (*env)->FindClass(env, "dev/quill/StreamCallback");
  if (!callback) return JNI_ERR;
  g_stream_on_tokens = (*env)->GetMethodID(env, callback, "onTokens", "(I[ILjava/lang/String;)Z");
  (*env)->DeleteLocalRef(env, callback);
  if (!g_stream_on_tokens) return JNI_ERR;
  jclass throwable = (*env)->FindClass(env, "java/lang/Throwable");
  if (!throwable) return JNI_ERR;
  g_add_suppressed = (*env)->GetMethodID(env, throwable, "addSuppressed", "(Ljava/lang/Throwable;)V");
  (*env)->DeleteLocalRef(env, throwable);
  if (!g_add_suppressed) return JNI_ERR;
  return JNI_VERSION_1_6;
}

JNIEXPORT void JNICALL JNI_OnUnload(JavaVM *vm, void *reserved) {
  (void)reserved;
  JNIEnv *env = NULL;
  if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION_1_6) != JNI_OK) return;
  jclass *globals[] = {&g_quill_exception, &g_hypothesis, &g_hypothesis_array, &g_generation,
                       &g_null_pointer,    &g_out_of_memory, &g_illegal_argument};
  for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++) {
    if (*globals[i]) (*env)->DeleteGlobalRef(env, *globals[i]);
    *globals[i] = NULL;
  }
}

JNIEXPORT jstring JNICALL Java_dev_quill_Native_version(JNIEnv *env, jclass cls) {
  (void)cls;
  const char *v = quill_version();
  return new_string_utf8(env, v, strlen(v));
}

JNIEXPORT jint JNICALL Java_dev_quill_Native_versionNumber(JNIEnv *env, jclass cls) {
  (void)env, (void)cls;
  return (jint)quill_version_number();
}

JNIEXPORT jint JNICALL Java_dev_quill_Native_abiVersion(JNIEnv *env, jclass cls) {
  (void)env, (void)cls;
  return (jint)quill_abi_version();
}

JNIEXPORT jint JNICALL Java_dev_quill_Native_headerAbiVersion(JNIEnv *env, jclass cls) {
  (void)env, (void)cls;
  return QUILL_ABI_VERSION;
}

JNIEXPORT jstring JNICALL Java_dev_quill_Native_statusName(JNIEnv *env, jclass cls, jint status) {
  (void)cls;
  const char *name = quill_status_str(status);
  return new_string_utf8(env, name, strlen(name));
}

/* ---- Models ---- */

JNIEXPORT jlong JNICALL Java_dev_quill_Native_modelOpen(JNIEnv *env, jclass cls, jstring path, jint threads,
                                                        jboolean in_memory) {
  (void)cls;
  char *cpath = utf8_of(env, path, "path", NULL);
  if (!cpath) return 0;
  quill_model_params p;
  quill_model *m = NULL;
  quill_status s = quill_model_default_params(&p);
  if (s == QUILL_OK) {
    p.threads = (uint32_t)threads;
    p.in_memory = in_memory ? 1 : 0;
    s = quill_model_open(cpath, &p, &m);
  }
  free(cpath);
  if (s != QUILL_OK) {
    throw_status(env, s);
    return 0;
  }
  return (jlong)(intptr_t)m;
}

JNIEXPORT void JNICALL Java_dev_quill_Native_modelFree(JNIEnv *env, jclass cls, jlong model) {
  (void)env, (void)cls;
  quill_model_free(model_of(model));
}

JNIEXPORT jstring JNICALL Java_dev_quill_Native_modelInfo(JNIEnv *env, jclass cls, jlong model, jlongArray out) {
  (void)cls;
  quill_model_info i;
  memset(&i, 0, sizeof i);
  i.struct_size = sizeof i;
  quill_status s = quill_model_info_get(model_of(model), &i);
  if (s != QUILL_OK) {
    throw_status(env, s);
    return NULL;
  }
  jlong v[INFO_LEN];
  v[INFO_ARCH] = i.arch;
  v[INFO_VOCAB_SIZE] = i.vocab_size;
  v[INFO_D_MODEL] = i.d_model;
  v[INFO_ENCODER_LAYERS] = i.encoder_layers;
  v[INFO_DECODER_LAYERS] = i.decoder_layers;
  v[INFO_THREADS] = i.threads;
  v[INFO_HAS_TOKENIZER] = i.has_tokenizer != 0;
  v[INFO_FILE_BYTES] = (jlong)i.file_bytes;
  v[INFO_COPIED_BYTES] = (jlong)i.copied_bytes;
  v[INFO_MAX_POSITIONS] = i.max_positions;
  v[INFO_BOS_ID] = i.bos_id;
  v[INFO_EOS_ID] = i.eos_id;
  v[INFO_PAD_ID] = i.pad_id;
  v[INFO_DECODER_START_ID] = i.decoder_start_id;
  v[INFO_N_EOS_IDS] = i.n_eos_ids;
  v[INFO_HAS_TARGET_TOKENIZER] = i.has_target_tokenizer != 0;
  if ((*env)->GetArrayLength(env, out) != INFO_LEN) {
    throw_new(env, g_illegal_argument, "quill_jni: ModelInfo array of the wrong length");
    return NULL;
  }
  (*env)->SetLongArrayRegion(env, out, 0, INFO_LEN, v);
  if ((*env)->ExceptionCheck(env)) return NULL;
  const char *isa = i.isa ? i.isa : "";
  return new_string_utf8(env, isa, strlen(isa));
}

JNIEXPORT jintArray JNICALL Java_dev_quill_Native_modelEosIds(JNIEnv *env, jclass cls, jlong model) {
  (void)cls;
  size_t n = 0;
  quill_status s = quill_model_eos_ids(model_of(model), NULL, 0, &n);
  if (s != QUILL_OK && s != QUILL_ERR_BUFFER_TOO_SMALL) {
    throw_status(env, s);
    return NULL;
  }
  uint32_t *ids = malloc((n + 1) * sizeof *ids);
  if (!ids) {
    throw_oom(env);
    return NULL;
  }
  s = quill_model_eos_ids(model_of(model), ids, n, &n);
  jintArray r = NULL;
  if (s != QUILL_OK)
    throw_status(env, s);
  else
    r = new_int_array(env, ids, n);
  free(ids);
  return r;
}

JNIEXPORT jintArray JNICALL Java_dev_quill_Native_tokenize(JNIEnv *env, jclass cls, jlong model, jstring text,
                                                           jboolean add_special, jboolean target) {
  (void)cls;
  size_t len = 0;
  char *ctext = utf8_of(env, text, "text", &len);
  if (!ctext) return NULL;
  quill_status (*tokenize)(const quill_model *, const char *, int32_t, uint32_t *, size_t, size_t *) =
      target ? quill_tokenize_target : quill_tokenize;
  /* Most texts have fewer ids than bytes (plus a few special ones): one call suffices. */
  size_t capacity = len + 16, n = 0;
  uint32_t *ids = malloc(capacity * sizeof *ids);
  jintArray r = NULL;
  if (!ids) {
    throw_oom(env);
    goto done;
  }
  quill_status s = tokenize(model_of(model), ctext, add_special ? 1 : 0, ids, capacity, &n);
  if (s == QUILL_ERR_BUFFER_TOO_SMALL) {
    uint32_t *bigger = realloc(ids, (n + 1) * sizeof *ids);
    if (!bigger) {
      throw_oom(env);
      goto done;
    }
    ids = bigger;
    capacity = n;
    s = tokenize(model_of(model), ctext, add_special ? 1 : 0, ids, capacity, &n);
  }
  if (s != QUILL_OK)
    throw_status(env, s);
  else
    r = new_int_array(env, ids, n);
done:
  free(ids);
  free(ctext);
  return r;
}

JNIEXPORT jstring JNICALL Java_dev_quill_Native_detokenize(JNIEnv *env, jclass cls, jlong model, jintArray jids,
                                                          jboolean skip_special) {
  (void)cls;
  size_t n = 0;
  uint32_t *ids = copy_ids(env, jids, "ids", &n);
  if (!ids) return NULL;
  char small[1024];
  char *buf = small;
  size_t len = 0;
  jstring r = NULL;
  quill_status s = quill_detokenize(model_of(model), ids, n, skip_special ? 1 : 0, small, sizeof small, &len);
  if (s == QUILL_ERR_BUFFER_TOO_SMALL) {
    buf = len < SIZE_MAX ? malloc(len + 1) : NULL;
    if (!buf) {
      throw_oom(env);
      goto done;
    }
    s = quill_detokenize(model_of(model), ids, n, skip_special ? 1 : 0, buf, len + 1, &len);
  }
  if (s != QUILL_OK)
    throw_status(env, s);
  else
    r = new_string_utf8(env, buf, len);
done:
  if (buf != small) free(buf);
  free(ids);
  return r;
}

/* ---- Sessions ---- */

JNIEXPORT jlong JNICALL Java_dev_quill_Native_sessionNew(JNIEnv *env, jclass cls, jlong model,
                                                         jlongArray packed) {
  (void)cls;
  quill_session_params p;
  quill_status s = quill_session_default_params(&p);
  if (s != QUILL_OK) {
    throw_status(env, s);
    return 0;
  }
  if (packed) {
    jlong v[SES_PACKED_LEN];
    if ((*env)->GetArrayLength(env, packed) != SES_PACKED_LEN) {
      throw_new(env, g_illegal_argument, "quill_jni: packed SessionOptions of the wrong length");
      return 0;
    }
    (*env)->GetLongArrayRegion(env, packed, 0, SES_PACKED_LEN, v);
    if ((*env)->ExceptionCheck(env)) return 0;
    jlong mask = v[0];
    if (IS_SET(mask, SES_MAX_BATCH)) p.max_batch = (uint32_t)v[SES_MAX_BATCH];
    if (IS_SET(mask, SES_MAX_INPUT_LEN)) p.max_input_len = (uint32_t)v[SES_MAX_INPUT_LEN];
    if (IS_SET(mask, SES_MAX_NEW_TOKENS)) p.max_new_tokens = (uint32_t)v[SES_MAX_NEW_TOKENS];
    if (IS_SET(mask, SES_BEAMS)) p.beams = (uint32_t)v[SES_BEAMS];
    if (IS_SET(mask, SES_MAX_MEMORY)) p.max_memory = (uint64_t)v[SES_MAX_MEMORY];
  }
  jq_session *js = calloc(1, sizeof *js);
  if (!js) {
    throw_oom(env);
    return 0;
  }
  s = quill_session_new(model_of(model), &p, &js->session);
  if (s == QUILL_OK) s = quill_session_generate_params(js->session, &js->defaults, sizeof js->defaults);
  if (s != QUILL_OK) {
    throw_status(env, s); /* reads the message before quill_session_free */
    quill_session_free(js->session);
    free(js);
    return 0;
  }
  return (jlong)(intptr_t)js;
}

JNIEXPORT void JNICALL Java_dev_quill_Native_sessionFree(JNIEnv *env, jclass cls, jlong session) {
  (void)env, (void)cls;
  jq_session *js = session_of(session);
  if (js) {
    quill_session_free(js->session);
    free(js);
  }
}

JNIEXPORT void JNICALL Java_dev_quill_Native_sessionCancel(JNIEnv *env, jclass cls, jlong session) {
  (void)cls;
  quill_status s = quill_session_cancel(session_of(session)->session);
  if (s != QUILL_OK) throw_status(env, s);
}

JNIEXPORT void JNICALL Java_dev_quill_Native_sessionReset(JNIEnv *env, jclass cls, jlong session) {
  (void)cls;
  quill_status s = quill_session_reset(session_of(session)->session);
  if (s != QUILL_OK) throw_status(env, s);
}

JNIEXPORT void JNICALL Java_dev_quill_Native_sessionLimits(JNIEnv *env, jclass cls, jlong session,
                                                           jlongArray out) {
  (void)cls;
  quill_session_params p;
  memset(&p, 0, sizeof p);
  p.struct_size = sizeof p;
  quill_status s = quill_session_limits(session_of(session)->session, &p);
  if (s != QUILL_OK) {
    throw_status(env, s);
    return;
  }
  jlong v[SES_PACKED_LEN] = {0x1F, p.max_batch, p.max_input_len, p.max_new_tokens, p.beams, (jlong)p.max_memory};
  if ((*env)->GetArrayLength(env, out) != SES_PACKED_LEN) {
    throw_new(env, g_illegal_argument, "quill_jni: SessionOptions array of the wrong length");
    return;
  }
  (*env)->SetLongArrayRegion(env, out, 0, SES_PACKED_LEN, v);
}

/* ---- Generation ---- */

JNIEXPORT jobject JNICALL Java_dev_quill_Native_generateText(JNIEnv *env, jclass cls, jlong session,
                                                             jobjectArray texts, jlongArray options,
                                                             jobject callback) {
  (void)cls;
  jq_session *js = session_of(session);
  quill_generate_params p;
  if (options && !read_generate_params(env, js, options, 0, &p)) return NULL;
  if (!texts) {
    throw_new(env, g_null_pointer, "texts");
    return NULL;
  }
  jsize n = (*env)->GetArrayLength(env, texts);
  char **c = calloc((size_t)n + 1, sizeof *c);
  jobject r = NULL;
  if (!c) {
    throw_oom(env);
    return NULL;
  }
  for (jsize i = 0; i < n; i++) {
    jstring t = (jstring)(*env)->GetObjectArrayElement(env, texts, i);
    if ((*env)->ExceptionCheck(env)) goto done;
    c[i] = utf8_of(env, t, "texts[i]", NULL);
    delete_local(env, t);
    if (!c[i]) goto done;
  }
  {
    stream_state st = {env, callback, NULL};
    quill_result *out = NULL;
    quill_status s = quill_generate_text(js->session, (const char *const *)c, (size_t)n, options ? &p : NULL,
                                         callback ? on_tokens : NULL, &st, &out);
    r = finish_generation(env, s, out, &st, 1);
  }
done:
  for (jsize i = 0; i < n; i++) free(c[i]);
  free(c);
  return r;
}

JNIEXPORT jobject JNICALL Java_dev_quill_Native_generateIds(JNIEnv *env, jclass cls, jlong session,
                                                            jobjectArray inputs, jlongArray options,
                                                            jobject callback) {
  (void)cls;
  jq_session *js = session_of(session);
  quill_generate_params p;
  if (options && !read_generate_params(env, js, options, 0, &p)) return NULL;
  if (!inputs) {
    throw_new(env, g_null_pointer, "inputs");
    return NULL;
  }
  jsize n = (*env)->GetArrayLength(env, inputs);
  uint32_t **ptrs = calloc((size_t)n + 1, sizeof *ptrs);
  size_t *lens = calloc((size_t)n + 1, sizeof *lens);
  jobject r = NULL;
  if (!ptrs || !lens) {
    throw_oom(env);
    goto done;
  }
  for (jsize i = 0; i < n; i++) {
    jintArray a = (jintArray)(*env)->GetObjectArrayElement(env, inputs, i);
    if ((*env)->ExceptionCheck(env)) goto done;
    ptrs[i] = copy_ids(env, a, "inputs[i]", &lens[i]);
    delete_local(env, a);
    if (!ptrs[i]) goto done;
  }
  {
    stream_state st = {env, callback, NULL};
    quill_result *out = NULL;
    quill_status s = quill_generate_ids(js->session, (const uint32_t *const *)ptrs, lens, (size_t)n,
                                        options ? &p : NULL, callback ? on_tokens : NULL, &st, &out);
    r = finish_generation(env, s, out, &st, 0);
  }
done:
  if (ptrs)
    for (jsize i = 0; i < n; i++) free(ptrs[i]);
  free(ptrs);
  free(lens);
  return r;
}

JNIEXPORT void JNICALL Java_dev_quill_Native_chatAdd(JNIEnv *env, jclass cls, jlong session, jstring role,
                                                     jstring content) {
  (void)cls;
  jq_session *js = session_of(session);
  char *crole = utf8_of(env, role, "role", NULL);
  if (!crole) return;
  char *ccontent = utf8_of(env, content, "content", NULL);
  if (!ccontent) {
    free(crole);
    return;
  }
  quill_status s = quill_chat_add(js->session, crole, ccontent);
  free(crole);
  free(ccontent);
  if (s != QUILL_OK) throw_status(env, s);
}

JNIEXPORT jobject JNICALL Java_dev_quill_Native_chat(JNIEnv *env, jclass cls, jlong session, jstring text,
                                                     jlongArray options, jobject callback) {
  (void)cls;
  jq_session *js = session_of(session);
  quill_generate_params p;
  if (options && !read_generate_params(env, js, options, 1, &p)) return NULL;
  char *ctext = utf8_of(env, text, "message", NULL);
  if (!ctext) return NULL;
  stream_state st = {env, callback, NULL};
  quill_result *out = NULL;
  quill_status s =
      quill_chat_turn(js->session, ctext, options ? &p : NULL, callback ? on_tokens : NULL, &st, &out);
  free(ctext);
  return finish_generation(env, s, out, &st, 1);
}
