"""The threat model's tests (issue 13). A package, so that their basenames (test_trust,
test_store, ...) may repeat those of tests/tooling and tests/runtime without a collection clash."""
