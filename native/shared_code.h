// What fork.cc needs of shared_code.cc: the parent's machine code moved into
// anonymous huge pages, which forked children inherit without page faults.
#pragma once

namespace mp {

// In the parent, before its first fork; does nothing after the first call,
// where huge pages are not on offer, or with NODE_MULTIPROCESSING_LARGE_PAGES=0.
void ShareCodeWithChildren();

// Whether ShareCodeWithChildren() moved the code.
bool CodeSharedWithChildren();

}  // namespace mp
