/* The quill C API for Swift: include/quill.h of the installed library (or the repository). */
#include <quill.h>
