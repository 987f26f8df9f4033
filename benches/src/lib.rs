//! Benchmark programs live in `src/bin/`; see README.md for what each measures.
