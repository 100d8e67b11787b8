// How many times a forked child has left its parent's JS stack (popen.cc's
// escapeToLoop terminates the execution to do so). A callback of the loop cut
// short that way ends with a null exception pending that is no error of the
// user's: CallFromLoop (errors.cc) tells the two apart with this count.
#pragma once

namespace mp {

unsigned int EscapeCount();

}  // namespace mp
