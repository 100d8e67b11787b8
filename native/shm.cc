#include "modules.h"

namespace mp {

void InitShm(Napi::Env env, Napi::Object exports) {}

}  // namespace mp
