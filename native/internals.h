// What the addon takes from Node beyond its public API, checked in the Node
// it runs in: see internals.cc.
#pragma once

namespace mp {

// Null when this Node's libuv lays out the loop, the stream handles and the
// write requests as the headers the addon was built against say (fork.cc
// reads their private fields); otherwise the first type that differs.
const char* LibuvLayoutMismatch();

}  // namespace mp
