/* fuzz_json_strict: the engine's strict JSON reader (safetensors headers,
 * the config in a checkpoint) and the config reader on top of it.
 *
 * Differential: whatever json_strict accepts, cJSON (the server's reader)
 * must accept too and read as the same tree — types, keys in order,
 * strings byte for byte, numbers the same double — so the two layers never
 * see two different documents in one header. (cJSON reads at most 63
 * characters of a number, so a longer one is compared loosely.) What the
 * config reader accepts must write and read back to the same config. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "engine/checkpoint.h"
#include "engine/json_strict.h"
#include "tests/fuzz/fuzz_env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 1 when the text holds a run of 60 or more number characters. */
static int has_long_number(const char *text, size_t len)
{
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        int num = (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '-' ||
                  c == '+';
        run = num ? run + 1 : 0;
        if (run >= 60)
            return 1;
    }
    return 0;
}

static void same_tree(const json_strict_value *s, const cJSON *c, int loose_numbers)
{
    FUZZ_CHECK(c != NULL, "cJSON lost a value");
    switch (s->type) {
    case JSON_STRICT_NULL:
        FUZZ_CHECK(cJSON_IsNull(c), "null read as another type by cJSON");
        break;
    case JSON_STRICT_BOOL:
        FUZZ_CHECK(s->boolean ? cJSON_IsTrue(c) : cJSON_IsFalse(c), "a boolean differs");
        break;
    case JSON_STRICT_NUMBER:
        FUZZ_CHECK(cJSON_IsNumber(c), "a number read as another type by cJSON");
        FUZZ_CHECK(isfinite(s->number), "json_strict kept a non-finite number");
        if (!loose_numbers)
            FUZZ_CHECK(s->number == c->valuedouble, "number %.17g read by cJSON as %.17g",
                       s->number, c->valuedouble);
        if (s->is_integer && fabs(s->number) < 9007199254740992.0)
            FUZZ_CHECK((double)s->integer == s->number, "integer %lld for %.17g",
                       (long long)s->integer, s->number);
        break;
    case JSON_STRICT_STRING:
        FUZZ_CHECK(cJSON_IsString(c), "a string read as another type by cJSON");
        FUZZ_CHECK(!strcmp(s->string, c->valuestring), "string \"%s\" read by cJSON as \"%s\"",
                   s->string, c->valuestring);
        FUZZ_CHECK(json_strict_utf8_valid(s->string), "json_strict kept invalid UTF-8");
        break;
    case JSON_STRICT_ARRAY:
    case JSON_STRICT_OBJECT: {
        int object = s->type == JSON_STRICT_OBJECT;
        FUZZ_CHECK(object ? cJSON_IsObject(c) : cJSON_IsArray(c), "a container's type differs");
        FUZZ_CHECK((size_t)cJSON_GetArraySize(c) == s->n, "%zu members, cJSON has %d", s->n,
                   cJSON_GetArraySize(c));
        const cJSON *item = c->child;
        for (size_t i = 0; i < s->n; i++, item = item->next) {
            if (object)
                FUZZ_CHECK(!strcmp(s->keys[i], item->string), "key \"%s\" read as \"%s\"",
                           s->keys[i], item->string);
            same_tree(&s->items[i], item, loose_numbers);
        }
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char err[256];
    json_strict_value root;
    if (json_strict_parse(text, size, 8, &root, err, sizeof err) == VAE_OK) {
        const char *end = NULL;
        cJSON *c = cJSON_ParseWithLengthOpts(text, size, &end, 0); /* owned: deleted below */
        FUZZ_CHECK(c != NULL, "json_strict accepts what cJSON refuses");
        same_tree(&root, c, has_long_number(text, size));
        cJSON_Delete(c);
        json_strict_free(&root);
    } else {
        FUZZ_CHECK(root.type == JSON_STRICT_NULL && root.n == 0 && !root.string,
                   "a failed parse left a tree");
    }

    vae_config cfg, again;
    if (ckpt_config_from_json(&cfg, text, size, err, sizeof err) == VAE_OK) {
        char json[8192], json2[8192];
        int n = ckpt_config_to_json(&cfg, json, sizeof json);
        FUZZ_CHECK(n > 0, "an accepted config does not write");
        FUZZ_CHECK(ckpt_config_from_json(&again, json, (size_t)n, err, sizeof err) == VAE_OK,
                   "the config we wrote does not read back: %s: %s", err, json);
        int n2 = ckpt_config_to_json(&again, json2, sizeof json2);
        FUZZ_CHECK(n2 == n && !memcmp(json, json2, (size_t)n), "config %s came back as %s", json,
                   json2);
    }
    return 0;
}
