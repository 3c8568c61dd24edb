package quill

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// The shared end-to-end cases (expected ids from the Rust API, written by tests/c_api.rs).
func expected(t *testing.T) map[string][]uint32 {
	data, err := os.ReadFile(os.Getenv("QUILL_EXPECTED"))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]uint32{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		kv := strings.SplitN(line, ":", 2)
		var v []uint32
		for _, s := range strings.Split(kv[1], ",") {
			if s != "" {
				n, _ := strconv.Atoi(s)
				v = append(v, uint32(n))
			}
		}
		m[kv[0]] = v
	}
	return m
}

func equal(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSharedCases(t *testing.T) {
	want := expected(t)
	m, err := Open(os.Getenv("QUILL_TEST_MODEL"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ids, err := m.Tokenize(os.Getenv("QUILL_TEST_TEXT"), true)
	if err != nil || !equal(ids, want["tokenize"]) {
		t.Fatalf("tokenize: %v %v", ids, err)
	}
	s, err := m.NewSession(2, 64, 32, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check := func(name string, got []uint32) {
		if !equal(got, want[name]) {
			t.Errorf("%s: got %v want %v", name, got, want[name])
		}
	}
	greedy := &Options{MaxNewTokens: 24, Beams: 1}
	out, _, err := s.Generate([][]uint32{ids}, greedy, nil)
	if err != nil {
		t.Fatal(err)
	}
	check("greedy", out[0][0].IDs)
	out, _, _ = s.Generate([][]uint32{ids}, &Options{MaxNewTokens: 24, Beams: 4, NBest: 2}, nil)
	check("beam0", out[0][0].IDs)
	check("beam1", out[0][1].IDs)
	out, _, _ = s.Generate([][]uint32{ids}, &Options{MaxNewTokens: 24, Beams: 1, Sample: true, TopK: 50, Seed: 7}, nil)
	check("sample", out[0][0].IDs)
	out, _, _ = s.Generate([][]uint32{ids, ids[:len(ids)-3]}, greedy, nil)
	check("batch0", out[0][0].IDs)
	check("batch1", out[1][0].IDs)
	var streamed []uint32
	text := ""
	texts, _, err := s.GenerateText([]string{os.Getenv("QUILL_TEST_TEXT")}, greedy, func(_ int, v []uint32, t string) bool {
		streamed = append(streamed, v...)
		text += t
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	check("greedy", streamed)
	if text != texts[0][0].Text {
		t.Errorf("streamed %q, result %q", text, texts[0][0].Text)
	}
	n := 0
	_, stopped, _ := s.Generate([][]uint32{ids}, greedy, func(_ int, v []uint32, _ string) bool {
		n += len(v)
		if n >= 3 {
			s.Cancel()
		}
		return true
	})
	if !stopped {
		t.Error("cancel did not stop the generation")
	}
}

func TestAllDefaultsFitTheModel(t *testing.T) {
	m, err := Open(os.Getenv("QUILL_TEST_MODEL"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := m.NewSession(1, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, _, err := s.GenerateText([]string{os.Getenv("QUILL_TEST_TEXT")}, nil, nil)
	if err != nil || out[0][0].Text == "" {
		t.Fatalf("all defaults: %v %v", out, err)
	}
}

func TestErrorsCarryStatusAndMessage(t *testing.T) {
	_, err := Open("/nonexistent.quill", 1)
	e, ok := err.(*Error)
	if !ok || e.Status != 2 || !strings.Contains(e.Message, "nonexistent") {
		t.Fatalf("unexpected error %v", err)
	}
	m, _ := Open(os.Getenv("QUILL_TEST_MODEL"), 1)
	defer m.Close()
	if _, err := m.Detokenize([]uint32{123456}); err == nil {
		t.Fatal("out-of-range id accepted")
	}
}

// A conversation with the shipped chat model: a system message, then a turn with the model's
// defaults, gives the reply the C API gives; an empty role, or a model without a chat template,
// is refused.
func TestChatAddSetsTheSystemMessage(t *testing.T) {
	want := expected(t)
	m, err := Open(os.Getenv("QUILL_CHAT_MODEL"), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := m.NewSession(1, 0, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.ChatAdd("system", os.Getenv("QUILL_CHAT_SYSTEM")); err != nil {
		t.Fatal(err)
	}
	h, err := s.Chat(os.Getenv("QUILL_CHAT_MESSAGE"), nil)
	if err != nil || !equal(h.IDs, want["chat"]) {
		t.Fatalf("chat: %v %v, want %v", h.IDs, err, want["chat"])
	}
	if err := s.ChatAdd("", "x"); err == nil {
		t.Fatal("an empty role was taken")
	}
	plain, _ := Open(os.Getenv("QUILL_TEST_MODEL"), 1)
	defer plain.Close()
	ps, _ := plain.NewSession(1, 0, 0, 0)
	defer ps.Close()
	err = ps.ChatAdd("system", "x")
	if e, ok := err.(*Error); !ok || !strings.Contains(e.Message, "chat template") {
		t.Fatalf("chat_add without a template: %v", err)
	}
}
