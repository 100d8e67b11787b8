#include "modules.h"

namespace mp {

void InitFutex(Napi::Env env, Napi::Object exports) {}

}  // namespace mp
