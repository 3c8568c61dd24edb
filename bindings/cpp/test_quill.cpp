// The shared end-to-end cases through the C++ wrapper (run by tests/c_api.rs):
//   test_quill MODEL EXPECTED.json-as-lines TEXT CHAT_MODEL SYSTEM MESSAGE
// EXPECTED is a text file of "name:id,id,..." lines made by the Rust side.
#include "quill.hpp"

#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

static std::string join(const std::vector<uint32_t> &v) {
  std::string s;
  for (size_t i = 0; i < v.size(); i++) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

int main(int argc, char **argv) {
  if (argc != 7) return 2;
  std::map<std::string, std::string> expected;
  std::ifstream f(argv[2]);
  for (std::string line; std::getline(f, line);) {
    auto c = line.find(':');
    expected[line.substr(0, c)] = line.substr(c + 1);
  }
  const std::string text = argv[3];
  int failures = 0;
  auto expect = [&](const std::string &name, const std::vector<uint32_t> &got) {
    if (join(got) != expected[name]) {
      std::cerr << name << ": got " << join(got) << ", expected " << expected[name] << "\n";
      failures++;
    }
  };
  quill::model m(argv[1], 1);
  auto ids = m.tokenize(text);
  expect("tokenize", ids);
  quill::session s = m.new_session(2, 64, 32, 4);
  auto o = m.default_options();
  o.params.max_new_tokens = 24;
  o.params.beams = 1;
  expect("greedy", s.generate_ids({ids}, o)[0][0].ids);
  auto ob = o;
  ob.params.beams = 4;
  ob.params.n_best = 2;
  auto beam = s.generate_ids({ids}, ob);
  expect("beam0", beam[0][0].ids);
  expect("beam1", beam[0][1].ids);
  auto os = o;
  os.params.sample = 1;
  os.params.seed = 7;
  os.params.top_k = 50;
  expect("sample", s.generate_ids({ids}, os)[0][0].ids);
  std::vector<uint32_t> short_input(ids.begin(), ids.end() - 3);
  auto batch = s.generate_ids({ids, short_input}, o);
  expect("batch0", batch[0][0].ids);
  expect("batch1", batch[1][0].ids);
  // Streaming: text pieces add up to the result's text; ids to its ids.
  std::string streamed;
  std::vector<uint32_t> streamed_ids;
  auto r = s.generate_text({text}, o, [&](size_t, const std::vector<uint32_t> &v, const std::string &t) {
    streamed += t;
    streamed_ids.insert(streamed_ids.end(), v.begin(), v.end());
    return true;
  });
  expect("greedy", streamed_ids);
  if (streamed != r[0][0].text) {
    std::cerr << "streamed text differs\n";
    failures++;
  }
  // Cancel from the callback: stops with what was produced.
  bool stopped = false;
  size_t n = 0;
  s.generate_ids({ids}, o, [&](size_t, const std::vector<uint32_t> &v, const std::string &) {
    n += v.size();
    if (n >= 3) s.cancel();
    return true;
  }, &stopped);
  if (!stopped) {
    std::cerr << "cancel did not stop\n";
    failures++;
  }
  // A throwing callback stops the generation; the exception comes out, nothing leaks
  // (LeakSanitizer in the ASan build).
  try {
    s.generate_text({text}, o, [&](size_t, const std::vector<uint32_t> &, const std::string &) -> bool {
      throw std::runtime_error("from the callback");
    });
    std::cerr << "the callback's exception was lost\n";
    failures++;
  } catch (const std::runtime_error &e) {
    if (std::string(e.what()) != "from the callback") failures++;
  }
  // All defaults: a session that fits the model, its own decoding.
  {
    quill::session d = m.new_session();
    auto out = d.generate_text({text});
    if (out.size() != 1 || out[0].empty() || out[0][0].text.empty()) {
      std::cerr << "all-defaults generation gave no text\n";
      failures++;
    }
  }
  // A conversation with the chat model: a system message, then a turn with its defaults.
  {
    quill::model cm(argv[4], 1);
    quill::session cs = cm.new_session(1, 0, 0, 1);
    cs.chat_add("system", argv[5]);
    expect("chat", cs.chat(argv[6]).ids);
    try {
      cs.chat_add("", "x");
      std::cerr << "an empty role was taken\n";
      failures++;
    } catch (const quill::error &e) {
      if (e.status() != QUILL_ERR_INVALID_ARGUMENT) failures++;
    }
  }
  // A model without a chat template refuses chat_add.
  try {
    s.chat_add("system", "x");
    std::cerr << "chat_add without a template was taken\n";
    failures++;
  } catch (const quill::error &e) {
    if (e.status() != QUILL_ERR_INVALID_ARGUMENT) failures++;
  }
  // Errors are exceptions with the status.
  try {
    quill::model bad("/nonexistent.quill");
    failures++;
  } catch (const quill::error &e) {
    if (e.status() != QUILL_ERR_IO) failures++;
  }
  try {
    m.detokenize({123456});
    failures++;
  } catch (const quill::error &e) {
    if (e.status() != QUILL_ERR_INVALID_ARGUMENT) failures++;
  }
  if (failures) return 1;
  std::cout << "C++: all checks passed\n";
  return 0;
}
