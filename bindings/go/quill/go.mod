module quill.local/quill

go 1.19
