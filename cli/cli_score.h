/* cli_score: `vaed score`, the anomaly scores of a data set's images.
 *
 *     vaed score --model fashion.safetensors --data fashion --limit 1000
 *     vaed score --model fashion.safetensors --data fashion --against mnist --regret 100
 *
 * For every image of --data (its test split when it has one) the scores of
 * eval_score_inputs (engine/eval.h): the negative ELBO, its reconstruction
 * and KL parts, the IWAE bound with --iwae K, the complexity in bits, the
 * complexity-corrected score, with --regret STEPS the likelihood regret,
 * recon_floor and ood_score; printed one line per image with --each, and as means. With
 * --against, the same for that data set's images, then the AUROC of each
 * score for them as anomalies against --data's. A conditional model scores
 * each image with its own label (modulo its classes for another set's).
 * Returns the exit status: 0, 1 failed, 2 a bad flag.
 */
#ifndef CLI_SCORE_H
#define CLI_SCORE_H

int cli_score(int argc, char **argv);

#endif
