/* fuzz_jobs_spec: POST /jobs bodies (server/jobs_spec.c), against a data
 * root holding small mnist and fashion sets (fuzz_env_data_root), as the
 * daemon parses them (confined to the root). An accepted spec must write
 * itself out (jobs_spec_to_json, what the registry stores and a resumed job
 * reads back) and read back to the same spec, and its memory estimate must
 * be a size the daemon can compare. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/jobs_spec.h"
#include "tests/fuzz/fuzz_env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *root = fuzz_env_data_root();
    static jobs_spec s, again; /* large (PATH_MAX): not on the stack */
    char err[512] = "";
    jobs_spec_status rc = jobs_spec_parse_confined((const char *)data, size, root, &s, err,
                                                   sizeof err);
    if (rc != JOBS_SPEC_OK) {
        FUZZ_CHECK(err[0] != '\0', "a refused spec without a message");
        return 0;
    }
    FUZZ_CHECK(s.model[0] != '\0', "accepted without a model");
    FUZZ_CHECK(s.n_train >= 1 && s.n_used >= 1 && s.n_used <= s.n_train, "n_train %d n_used %d",
               s.n_train, s.n_used);
    FUZZ_CHECK(s.mem_bytes > 0 && s.mem_bytes < SIZE_MAX / 2, "memory estimate %zu",
               s.mem_bytes);
    char *json = jobs_spec_to_json(&s); /* owned: freed below */
    FUZZ_CHECK(json != NULL, "an accepted spec does not write");
    rc = jobs_spec_parse_confined(json, strlen(json), root, &again, err, sizeof err);
    FUZZ_CHECK(rc == JOBS_SPEC_OK, "the spec we wrote does not read back: %s: %s", err, json);
    char *json2 = jobs_spec_to_json(&again); /* owned: freed below */
    FUZZ_CHECK(json2 && !strcmp(json, json2), "spec %s came back as %s", json,
               json2 ? json2 : "(null)");
    FUZZ_CHECK(again.mem_bytes == s.mem_bytes && again.n_used == s.n_used &&
                   again.klass == s.klass && again.limit == s.limit,
               "the spec read back differs");
    free(json2);
    free(json);
    return 0;
}
