// LLVMFuzzerRunDriver is defined by libFuzzer's runtime, linked by -sanitize=fuzzer.
#include "CFuzzer.h"
