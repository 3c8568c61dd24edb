// Imports the Swift package's C module through clang's module system: the module map and its
// header resolve and expose the API (the check Swift's importer would do first).
@import CQuill;

int main(void) {
  quill_model_params p;
  return quill_model_default_params(&p) == QUILL_OK && quill_abi_version() == QUILL_ABI_VERSION ? 0 : 1;
}
