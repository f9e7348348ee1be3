/* Checkpoints: safetensors round trip, every way a file can disagree with
 * itself is refused with a message, and the bytes written are pinned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "engine/checkpoint.h"
#include "engine/safetensors.h"

static void small_model(vae_model *m, vae_likelihood lik)
{
    char err[200];
    vae_config c;
    vae_config_default(&c);
    c.height = 4;
    c.width = 5;
    c.n_hidden = 2;
    c.hidden[0] = 6;
    c.hidden[1] = 3;
    c.latent = 2;
    c.likelihood = lik;
    c.beta = 0.5f;
    c.kl_warmup = 77;
    c.seed = 1234567890123ULL;
    assert_int_equal(vae_init(m, &c, 3, err, sizeof err), 0);
}

static void test_round_trip_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/vaed-ckpt-XXXXXX", path[256], err[300];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    vae_model a, b;
    small_model(&a, VAE_LIK_GAUSSIAN_LEARNED);
    assert_int_equal(ckpt_save_file(&a, "{\"epochs\":1}", path, err, sizeof err), 0);
    char *metrics = NULL;
    assert_int_equal(ckpt_load_file(&b, path, &metrics, err, sizeof err), 0);
    assert_string_equal(metrics, "{\"epochs\":1}");
    assert_memory_equal(&a.cfg, &b.cfg, sizeof a.cfg);
    assert_int_equal(a.n_params, b.n_params);
    assert_memory_equal(a.params, b.params, sizeof(float) * a.n_params);
    /* PyTorch layout: Linear weight is [out, in] */
    const vae_tensor *w = vae_find_tensor(&b, "encoder.0.weight");
    assert_non_null(w);
    assert_int_equal(w->shape[0], 6);
    assert_int_equal(w->shape[1], 20);
    free(metrics);
    vae_free(&a);
    vae_free(&b);
    unlink(path);
    rmdir(dir);
}

static void test_missing_file_is_an_io_error(void **state)
{
    (void)state;
    vae_model m;
    char err[300];
    assert_int_equal(ckpt_load_file(&m, "/nonexistent/x.safetensors", NULL, err, sizeof err),
                     VAE_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/x.safetensors"));
}

static int load_rc(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
    vae_model m;
    int rc = ckpt_load_mem(&m, buf, len, NULL, err, errlen);
    if (rc == 0) vae_free(&m);
    return rc;
}

static void test_corrupt_files_are_refused(void **state)
{
    (void)state;
    vae_model a;
    small_model(&a, VAE_LIK_BERNOULLI);
    uint8_t *buf;
    size_t len;
    char err[300];
    assert_int_equal(ckpt_save_mem(&a, NULL, &buf, &len, err, sizeof err), 0);
    assert_int_equal(load_rc(buf, len, err, sizeof err), 0);
    uint8_t *bad = malloc(len);

    /* header length beyond the file */
    memcpy(bad, buf, len);
    bad[5] = 0x7f;
    assert_int_equal(load_rc(bad, len, err, sizeof err), VAE_ERR_FORMAT);
    /* a brace of the header JSON replaced */
    memcpy(bad, buf, len);
    bad[8] = '[';
    assert_int_equal(load_rc(bad, len, err, sizeof err), VAE_ERR_FORMAT);
    /* truncated data */
    assert_int_equal(load_rc(buf, len - 4, err, sizeof err), VAE_ERR_FORMAT);
    /* empty and tiny buffers */
    assert_int_equal(load_rc(buf, 0, err, sizeof err), VAE_ERR_FORMAT);
    assert_int_equal(load_rc(buf, 7, err, sizeof err), VAE_ERR_FORMAT);
    /* a NaN weight */
    memcpy(bad, buf, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | bad[i];
    float nan = NAN;
    memcpy(bad + 8 + hlen + 4, &nan, 4);
    assert_int_equal(load_rc(bad, len, err, sizeof err), VAE_ERR_FORMAT);
    assert_non_null(strstr(err, "non-finite"));
    free(bad);
    free(buf);
    vae_free(&a);
}

static void test_config_must_agree_with_tensors(void **state)
{
    (void)state;
    vae_model a;
    small_model(&a, VAE_LIK_BERNOULLI);
    char err[300], cfg[2048];
    /* claim a latent size of 3 in the config while the tensors hold 2 */
    vae_config lie = a.cfg;
    lie.latent = 3;
    assert_true(ckpt_config_to_json(&lie, cfg, sizeof cfg) > 0);
    st_tensor_out t[VAE_MAX_TENSORS] = {{0}};
    for (int i = 0; i < a.n_tensors; i++) {
        t[i].name = a.tensors[i].name;
        t[i].ndim = a.tensors[i].ndim;
        t[i].shape[0] = a.tensors[i].shape[0];
        t[i].shape[1] = a.tensors[i].shape[1];
        t[i].data = a.params + a.tensors[i].offset;
    }
    const char *keys[] = {"vaed_config"}, *vals[] = {cfg};
    uint8_t *buf;
    size_t len;
    assert_int_equal(st_write_mem(t, a.n_tensors, keys, vals, 1, &buf, &len, err, sizeof err), 0);
    assert_int_equal(load_rc(buf, len, err, sizeof err), VAE_ERR_FORMAT);
    assert_non_null(strstr(err, "shape"));
    free(buf);
    /* a tensor missing */
    vals[0] = cfg;
    a.cfg.latent = 2;
    assert_true(ckpt_config_to_json(&a.cfg, cfg, sizeof cfg) > 0);
    assert_int_equal(st_write_mem(t, a.n_tensors - 1, keys, vals, 1, &buf, &len, err, sizeof err), 0);
    assert_int_equal(load_rc(buf, len, err, sizeof err), VAE_ERR_FORMAT);
    free(buf);
    /* a config that is not JSON */
    vals[0] = "{\"latent\": 2,";
    assert_int_equal(st_write_mem(t, a.n_tensors, keys, vals, 1, &buf, &len, err, sizeof err), 0);
    assert_int_equal(load_rc(buf, len, err, sizeof err), VAE_ERR_FORMAT);
    assert_non_null(strstr(err, "config"));
    free(buf);
    vae_free(&a);
}

static void test_config_json_round_trip(void **state)
{
    (void)state;
    vae_config a, b;
    vae_config_default(&a);
    a.n_hidden = 3;
    a.hidden[2] = 17;
    a.hidden[1] = 9;
    a.activation = VAE_ACT_ELU;
    a.likelihood = VAE_LIK_CBERNOULLI;
    a.binarize = VAE_BIN_DYNAMIC;
    a.free_bits = 0.25f;
    a.lr = 3e-4f;
    a.clip_grad = 5.0f;
    char buf[2048], err[200];
    int n = ckpt_config_to_json(&a, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(ckpt_config_from_json(&b, buf, (size_t)n, err, sizeof err), 0);
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(ckpt_config_to_json(&a, buf, 10), -1); /* too small a buffer says so */
    const char *bad = "{\"latent\": -4}";
    assert_int_not_equal(ckpt_config_from_json(&b, bad, strlen(bad), err, sizeof err), 0);
    bad = "{\"likelihood\": \"poisson\"}";
    assert_int_not_equal(ckpt_config_from_json(&b, bad, strlen(bad), err, sizeof err), 0);
}

/* The bytes a checkpoint is written as, pinned: the registry names a
 * checkpoint by their SHA-256, so any change of tensor order, header layout,
 * number format or padding would silently make new files of old models. The
 * parameters are set here, not drawn, so only the format is pinned. */
static const char pinned_header[] =
    "{\"__metadata__\":{\"format\":\"pt\",\"vaed_config\":\"{\\\"arch\\\":\\\"mlp\\\",\\\""
    "channels\\\":1,\\\"height\\\":2,\\\"width\\\":3,\\\"hidden\\\":[4],\\\"conv_channels"
    "\\\":[32,64,128,256],\\\"latent\\\":2,\\\"activation\\\":\\\"relu\\\",\\\"likelihood"
    "\\\":\\\"bernoulli\\\",\\\"sigma\\\":1,\\\"binarize\\\":\\\"none\\\",\\\"beta\\\":1,"
    "\\\"kl_warmup\\\":0,\\\"free_bits\\\":0,\\\"mc_samples\\\":1,\\\"lr\\\":0.0010000000"
    "5,\\\"beta1\\\":0.899999976,\\\"beta2\\\":0.999000013,\\\"eps\\\":9.99999994e-09,\\\""
    "weight_decay\\\":0,\\\"clip_grad\\\":0,\\\"batch\\\":128,\\\"epochs\\\":10,\\\"seed\\"
    "\":1}\",\"vaed_metrics\":\"{\\\"epochs\\\":[1]}\"},\"encoder.0.weight\":{\"dtype\":\""
    "F32\",\"shape\":[4,6],\"data_offsets\":[0,96]},\"encoder.0.bias\":{\"dtype\":\"F32\""
    ",\"shape\":[4],\"data_offsets\":[96,112]},\"fc_mu.weight\":{\"dtype\":\"F32\",\"shap"
    "e\":[2,4],\"data_offsets\":[112,144]},\"fc_logvar.weight\":{\"dtype\":\"F32\",\"shap"
    "e\":[2,4],\"data_offsets\":[144,176]},\"fc_mu.bias\":{\"dtype\":\"F32\",\"shape\":[2"
    "],\"data_offsets\":[176,184]},\"fc_logvar.bias\":{\"dtype\":\"F32\",\"shape\":[2],\""
    "data_offsets\":[184,192]},\"decoder.0.weight\":{\"dtype\":\"F32\",\"shape\":[4,2],\""
    "data_offsets\":[192,224]},\"decoder.0.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data"
    "_offsets\":[224,240]},\"out.weight\":{\"dtype\":\"F32\",\"shape\":[6,4],\"data_offse"
    "ts\":[240,336]},\"out.bias\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[336,"
    "360]}}";

static void test_bytes_are_pinned(void **state)
{
    (void)state;
    vae_config c;
    vae_config_default(&c);
    c.height = 2;
    c.width = 3;
    c.hidden[0] = 4;
    c.latent = 2;
    vae_model m;
    char err[256];
    assert_int_equal(vae_alloc(&m, &c, err, sizeof err), VAE_OK);
    for (size_t i = 0; i < m.n_params; i++) m.params[i] = (float)i * 0.25f - 3.0f;
    uint8_t *buf;
    size_t len;
    assert_int_equal(ckpt_save_mem(&m, "{\"epochs\":[1]}", &buf, &len, err, sizeof err), VAE_OK);
    assert_int_equal(len, 1576);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    assert_int_equal(hlen, 1208); /* padded with spaces to a multiple of 8 */
    size_t json_len = strlen(pinned_header);
    if (memcmp(buf + 8, pinned_header, json_len) != 0)
        fail_msg("the header differs from the pinned one:\n%.*s", (int)hlen, (const char *)buf + 8);
    for (size_t i = 8 + json_len; i < 8 + hlen; i++) assert_int_equal(buf[i], ' ');
    assert_int_equal(len - 8 - hlen, sizeof(float) * m.n_params);
    assert_memory_equal(buf + 8 + hlen, m.params, sizeof(float) * m.n_params);
    assert_int_equal(crc32(0L, buf, (uInt)len), 0x6a265690u);
    free(buf);
    vae_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_file),
        cmocka_unit_test(test_missing_file_is_an_io_error),
        cmocka_unit_test(test_corrupt_files_are_refused),
        cmocka_unit_test(test_config_must_agree_with_tensors),
        cmocka_unit_test(test_config_json_round_trip),
        cmocka_unit_test(test_bytes_are_pinned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
