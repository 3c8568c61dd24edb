// Package quill is the Go binding of the quill inference engine (cgo over include/quill.h).
//
//	model, err := quill.Open("model.quill", 0)
//	session, err := model.NewSession(1, 0, 0, 0) // 0: fit the model
//	out, err := session.GenerateText([]string{"Open the file"}, nil, nil)
//	fmt.Println(out[0][0].Text)
//
// Errors carry the C status and the library's message, read in the same C call that failed: a
// goroutine may move to another OS thread between two cgo calls, and quill_last_error() is
// per thread, so every call goes through a small C shim that returns both at once.
//
// Build: with quill installed in a standard prefix (scripts/install.sh /usr/local) nothing is
// needed; elsewhere CGO_CFLAGS="$(pkg-config --cflags quill)" CGO_LDFLAGS="$(pkg-config --libs quill)".
package quill

/*
#cgo LDFLAGS: -lquill
#include <quill.h>
#include <stdlib.h>
#include <string.h>

// Copies the calling thread's last error into a new C string when st != QUILL_OK.
static quill_status with_msg(quill_status st, char **msg) {
	*msg = st == QUILL_OK ? NULL : strdup(quill_last_error());
	return st;
}
static quill_status open_model(const char *path, uint32_t threads, quill_model **out, char **msg) {
	quill_model_params p;
	quill_model_default_params(&p);
	p.threads = threads;
	return with_msg(quill_model_open(path, &p, out), msg);
}
static quill_status new_session(quill_model *m, uint32_t batch, uint32_t in, uint32_t out_len, uint32_t beams, quill_session **out, char **msg) {
	quill_session_params p;
	quill_session_default_params(&p);
	p.max_batch = batch; p.max_input_len = in; p.max_new_tokens = out_len; p.beams = beams;
	return with_msg(quill_session_new(m, &p, out), msg);
}
static quill_status tokenize(quill_model *m, const char *text, int special, uint32_t *ids, size_t cap, size_t *n, char **msg) {
	return with_msg(quill_tokenize(m, text, special, ids, cap, n), msg);
}
static quill_status detokenize(quill_model *m, const uint32_t *ids, size_t n, char *buf, size_t cap, size_t *len, char **msg) {
	return with_msg(quill_detokenize(m, ids, n, 1, buf, cap, len), msg);
}
// The model's decoding defaults lowered to what the session holds.
static quill_status default_params(quill_session *s, quill_generate_params *p, char **msg) {
	return with_msg(quill_session_generate_params(s, p, sizeof *p), msg);
}
extern int32_t goStream(void *user, size_t input, uint32_t *ids, size_t n, char *text, size_t len);
static int32_t stream_trampoline(void *user, size_t input, const uint32_t *ids, size_t n, const char *text, size_t len) {
	return goStream(user, input, (uint32_t *)ids, n, (char *)text, len);
}
// p NULL: the model's own decoding defaults, fitted to the session.
static quill_status generate_ids(quill_session *s, const uint32_t **inputs, const size_t *lens, size_t n,
                                 const quill_generate_params *p, int stream, void *user, quill_result **out, char **msg) {
	return with_msg(quill_generate_ids(s, inputs, lens, n, p, stream ? stream_trampoline : NULL, user, out), msg);
}
static quill_status generate_text(quill_session *s, const char **texts, size_t n, const quill_generate_params *p,
                                  int stream, void *user, quill_result **out, char **msg) {
	return with_msg(quill_generate_text(s, texts, n, p, stream ? stream_trampoline : NULL, user, out), msg);
}
static quill_status chat_turn(quill_session *s, const char *text, int stream, void *user, quill_result **out, char **msg) {
	return with_msg(quill_chat_turn(s, text, NULL, stream ? stream_trampoline : NULL, user, out), msg);
}
static quill_status chat_add(quill_session *s, const char *role, const char *content, char **msg) {
	return with_msg(quill_chat_add(s, role, content), msg);
}
static quill_status result_ids(quill_result *r, size_t i, size_t h, const uint32_t **ids, size_t *n, char **msg) {
	return with_msg(quill_result_ids(r, i, h, ids, n), msg);
}
static quill_status result_text(quill_result *r, size_t i, size_t h, const char **text, char **msg) {
	return with_msg(quill_result_text(r, i, h, text), msg);
}
static quill_status result_score(quill_result *r, size_t i, size_t h, float *score, char **msg) {
	return with_msg(quill_result_score(r, i, h, score), msg);
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// Error is a failed quill call.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s", C.GoString(C.quill_status_str(C.int(e.Status))), e.Message)
}

func check(st C.quill_status, msg *C.char) error {
	if st == C.QUILL_OK {
		return nil
	}
	defer C.free(unsafe.Pointer(msg))
	return &Error{Status: int(st), Message: C.GoString(msg)}
}

// Model is an open model; safe for concurrent use.
type Model struct{ h *C.quill_model }

// Open opens a .quill file with the given number of threads (0: one per core). On error nothing
// is left to close.
func Open(path string, threads int) (*Model, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var h *C.quill_model
	var msg *C.char
	if err := check(C.open_model(cpath, C.uint32_t(threads), &h, &msg), msg); err != nil {
		return nil, err
	}
	m := &Model{h}
	runtime.SetFinalizer(m, (*Model).Close)
	return m, nil
}

// Close frees the model (sessions stay valid).
func (m *Model) Close() {
	if m.h != nil {
		C.quill_model_free(m.h)
		m.h = nil
	}
}

// Tokenize turns text into ids with the model's tokenizer.
func (m *Model) Tokenize(text string, addSpecial bool) ([]uint32, error) {
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	special := C.int(0)
	if addSpecial {
		special = 1
	}
	var n C.size_t
	var msg *C.char
	st := C.tokenize(m.h, ctext, special, nil, 0, &n, &msg)
	if st != C.QUILL_ERR_BUFFER_TOO_SMALL {
		if err := check(st, msg); err != nil {
			return nil, err
		}
	} else {
		C.free(unsafe.Pointer(msg))
	}
	ids := make([]uint32, int(n)+1)
	if err := check(C.tokenize(m.h, ctext, special, (*C.uint32_t)(&ids[0]), C.size_t(len(ids)), &n, &msg), msg); err != nil {
		return nil, err
	}
	return ids[:n], nil
}

// Detokenize turns ids into text, skipping special tokens.
func (m *Model) Detokenize(ids []uint32) (string, error) {
	if len(ids) == 0 {
		return "", nil
	}
	var n C.size_t
	var msg *C.char
	cids := (*C.uint32_t)(&ids[0])
	st := C.detokenize(m.h, cids, C.size_t(len(ids)), nil, 0, &n, &msg)
	if st != C.QUILL_ERR_BUFFER_TOO_SMALL {
		if err := check(st, msg); err != nil {
			return "", err
		}
	} else {
		C.free(unsafe.Pointer(msg))
	}
	buf := make([]byte, int(n)+1)
	err := check(C.detokenize(m.h, cids, C.size_t(len(ids)), (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &n, &msg), msg)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// Options are decoding options. A zero field keeps the model's own default (its
// quill.generation); a nil *Options keeps them all.
type Options struct {
	MaxNewTokens int
	Beams, NBest int
	Sample       bool
	TopK         int
	Seed         uint64
}

// Hypothesis is one generated sequence: its ids, its text (empty for ids generation) and its
// score.
type Hypothesis struct {
	IDs   []uint32
	Text  string
	Score float32
}

// Session holds the cache of one user; use it from one goroutine at a time (Cancel from any).
type Session struct {
	h     *C.quill_session
	model *Model
}

// NewSession sizes a session: batch, input tokens, new tokens, beams; 0 for the last three fits
// the model (its positions, its default decoding). On error nothing is left to close.
func (m *Model) NewSession(batch, inputLen, newTokens, beams int) (*Session, error) {
	var h *C.quill_session
	var msg *C.char
	if err := check(C.new_session(m.h, C.uint32_t(batch), C.uint32_t(inputLen), C.uint32_t(newTokens), C.uint32_t(beams), &h, &msg), msg); err != nil {
		return nil, err
	}
	s := &Session{h, m}
	runtime.SetFinalizer(s, (*Session).Close)
	return s, nil
}

// Close frees the session.
func (s *Session) Close() {
	if s.h != nil {
		C.quill_session_free(s.h)
		s.h = nil
	}
}

// Cancel stops the running generation; callable from any goroutine.
func (s *Session) Cancel() { C.quill_session_cancel(s.h) }

// StreamFunc receives the final tokens of an input and the text they add (empty for ids
// generation); return false to stop.
type StreamFunc func(input int, ids []uint32, text string) bool

//export goStream
func goStream(user unsafe.Pointer, input C.size_t, ids *C.uint32_t, n C.size_t, text *C.char, length C.size_t) C.int32_t {
	f := cgo.Handle(uintptr(user)).Value().(StreamFunc)
	v := make([]uint32, int(n))
	if n > 0 {
		copy(v, unsafe.Slice((*uint32)(unsafe.Pointer(ids)), int(n)))
	}
	t := ""
	if text != nil {
		t = C.GoStringN(text, C.int(length))
	}
	if f(int(input), v, t) {
		return 0
	}
	return 1
}

// params turns o into C parameters (nil: the model's defaults, fitted to the session).
func (s *Session) params(o *Options) (*C.quill_generate_params, error) {
	if o == nil {
		return nil, nil
	}
	p := (*C.quill_generate_params)(C.malloc(C.size_t(unsafe.Sizeof(C.quill_generate_params{}))))
	var msg *C.char
	if err := check(C.default_params(s.h, p, &msg), msg); err != nil {
		C.free(unsafe.Pointer(p))
		return nil, err
	}
	if o.MaxNewTokens > 0 {
		p.max_new_tokens = C.uint32_t(o.MaxNewTokens)
	}
	if o.Beams > 0 {
		p.beams = C.uint32_t(o.Beams)
	}
	if o.NBest > 0 {
		p.n_best = C.uint32_t(o.NBest)
	}
	if o.Sample {
		p.sample = 1
		p.top_k = C.uint32_t(o.TopK)
		p.seed = C.uint64_t(o.Seed)
	}
	return p, nil
}

// streaming returns the C arguments of a stream callback (and releases its handle on done).
func streaming(stream StreamFunc) (C.int, unsafe.Pointer, func()) {
	if stream == nil {
		return 0, nil, func() {}
	}
	handle := cgo.NewHandle(stream)
	return 1, unsafe.Pointer(uintptr(handle)), handle.Delete
}

// collect reads and frees a result.
func collect(r *C.quill_result, withText bool) ([][]Hypothesis, bool, error) {
	defer C.quill_result_free(r)
	var msg *C.char
	out := make([][]Hypothesis, int(C.quill_result_inputs(r)))
	for i := range out {
		for h := 0; h < int(C.quill_result_hypotheses(r, C.size_t(i))); h++ {
			var ids *C.uint32_t
			var cnt C.size_t
			if err := check(C.result_ids(r, C.size_t(i), C.size_t(h), &ids, &cnt, &msg), msg); err != nil {
				return nil, false, err
			}
			x := Hypothesis{IDs: make([]uint32, int(cnt))}
			if cnt > 0 {
				copy(x.IDs, unsafe.Slice((*uint32)(unsafe.Pointer(ids)), int(cnt)))
			}
			var score C.float
			if err := check(C.result_score(r, C.size_t(i), C.size_t(h), &score, &msg), msg); err != nil {
				return nil, false, err
			}
			x.Score = float32(score)
			if withText {
				var t *C.char
				if err := check(C.result_text(r, C.size_t(i), C.size_t(h), &t, &msg), msg); err != nil {
					return nil, false, err
				}
				x.Text = C.GoString(t)
			}
			out[i] = append(out[i], x)
		}
	}
	return out, C.quill_result_stopped(r) != 0, nil
}

// Generate runs the inputs (token ids) and returns, per input, the hypotheses (best first) and
// whether the generation was stopped early. o nil: the model's own decoding.
func (s *Session) Generate(inputs [][]uint32, o *Options, stream StreamFunc) ([][]Hypothesis, bool, error) {
	p, err := s.params(o)
	if err != nil {
		return nil, false, err
	}
	defer C.free(unsafe.Pointer(p))
	// Inputs live in C memory for the call (cgo forbids Go pointers to Go pointers).
	n := len(inputs)
	if n == 0 {
		return nil, false, &Error{Status: int(C.QUILL_ERR_INVALID_ARGUMENT), Message: "no inputs"}
	}
	ptrs := unsafe.Slice((**C.uint32_t)(C.malloc(C.size_t(n)*C.size_t(unsafe.Sizeof(uintptr(0))))), n)
	lens := unsafe.Slice((*C.size_t)(C.malloc(C.size_t(n)*C.size_t(unsafe.Sizeof(C.size_t(0))))), n)
	defer C.free(unsafe.Pointer(&ptrs[0]))
	defer C.free(unsafe.Pointer(&lens[0]))
	for i, in := range inputs {
		buf := unsafe.Slice((*C.uint32_t)(C.malloc(C.size_t(len(in)+1)*4)), len(in)+1)
		for j, v := range in {
			buf[j] = C.uint32_t(v)
		}
		ptrs[i] = &buf[0]
		lens[i] = C.size_t(len(in))
		defer C.free(unsafe.Pointer(&buf[0]))
	}
	on, user, done := streaming(stream)
	defer done()
	var r *C.quill_result
	var msg *C.char
	if err := check(C.generate_ids(s.h, &ptrs[0], &lens[0], C.size_t(n), p, on, user, &r, &msg), msg); err != nil {
		return nil, false, err
	}
	return collect(r, false)
}

// GenerateText runs the texts (source sentences or prompts) and returns, per input, the
// hypotheses with their text (best first) and whether the generation was stopped early.
// o nil: the model's own decoding.
func (s *Session) GenerateText(texts []string, o *Options, stream StreamFunc) ([][]Hypothesis, bool, error) {
	p, err := s.params(o)
	if err != nil {
		return nil, false, err
	}
	defer C.free(unsafe.Pointer(p))
	n := len(texts)
	if n == 0 {
		return nil, false, &Error{Status: int(C.QUILL_ERR_INVALID_ARGUMENT), Message: "no inputs"}
	}
	ptrs := unsafe.Slice((**C.char)(C.malloc(C.size_t(n)*C.size_t(unsafe.Sizeof(uintptr(0))))), n)
	defer C.free(unsafe.Pointer(&ptrs[0]))
	for i, t := range texts {
		ptrs[i] = C.CString(t)
		defer C.free(unsafe.Pointer(ptrs[i]))
	}
	on, user, done := streaming(stream)
	defer done()
	var r *C.quill_result
	var msg *C.char
	if err := check(C.generate_text(s.h, &ptrs[0], C.size_t(n), p, on, user, &r, &msg), msg); err != nil {
		return nil, false, err
	}
	return collect(r, true)
}

// ChatAdd adds a message with role ("system", "user", "assistant") to the conversation kept in
// the session without generating: a system prompt before the first turn, or earlier turns to
// continue from. The model needs a chat template.
func (s *Session) ChatAdd(role, content string) error {
	crole := C.CString(role)
	defer C.free(unsafe.Pointer(crole))
	ccontent := C.CString(content)
	defer C.free(unsafe.Pointer(ccontent))
	var msg *C.char
	return check(C.chat_add(s.h, crole, ccontent, &msg), msg)
}

// Chat adds the user's message to the conversation kept in the session (formatted with the
// model's chat template when it has one, else given as it is) and returns the reply of a
// decoder-only model, with its own decoding defaults.
func (s *Session) Chat(message string, stream StreamFunc) (Hypothesis, error) {
	cmsg := C.CString(message)
	defer C.free(unsafe.Pointer(cmsg))
	on, user, done := streaming(stream)
	defer done()
	var r *C.quill_result
	var msg *C.char
	if err := check(C.chat_turn(s.h, cmsg, on, user, &r, &msg), msg); err != nil {
		return Hypothesis{}, err
	}
	out, _, err := collect(r, true)
	if err != nil {
		return Hypothesis{}, err
	}
	return out[0][0], nil
}
