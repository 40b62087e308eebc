#include "BuildInfo.h"

const char *imgfs_build_commit(void) {
#ifdef IMGFS_BUILD_COMMIT
    return IMGFS_BUILD_COMMIT;
#else
    return 0;
#endif
}
