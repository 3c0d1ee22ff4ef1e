#!/usr/bin/env python3
"""Write a vocab-only GGUF: a model's tokenizer and hyperparameters, without any tensors.

`wellspring prompt` measures prompts in tokens even when no model is given; it loads the
file this script writes (server/assets/qwen2.5-coder-vocab.gguf, checked in) with
llama.cpp's vocab-only mode. Regenerate it from any Qwen2.5-Coder GGUF:

    pip install gguf
    python3 scripts/make-vocab-gguf.py models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
        server/assets/qwen2.5-coder-vocab.gguf
"""
import sys

try:
    import gguf
except ImportError:  # pragma: no cover
    sys.exit("missing package: gguf (pip install gguf)")

# Keys llama.cpp reads before it gets to the vocabulary, plus the vocabulary itself.
# Everything else (tensor layout, quantization, chat template) is left out.
KEEP_PREFIXES = ("general.architecture", "general.name", "tokenizer.ggml.")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: make-vocab-gguf.py SOURCE.gguf OUT.gguf")
    source, out = sys.argv[1], sys.argv[2]
    reader = gguf.GGUFReader(source)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(out, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        keep = key.startswith(KEEP_PREFIXES) or key.startswith(arch + ".")
        if not keep:
            continue
        vtype = field.types[0]
        sub_type = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
