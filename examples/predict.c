/* Loads a trained joint NLU model and predicts the sentences read from
 * stdin, one a line (tokens separated by spaces): prints the intent with its
 * probability and each token's slot label.
 *
 *     attune train --data data/sample -o model.onnx
 *     printf 'play some jazz\n' | predict model.onnx
 *     play some jazz
 *       intent PlayMusic (0.97)
 *       slots  O O B-genre
 *
 * A model trained from C works the same: at_nlu_model_from_split,
 * at_nlu_train and at_nlu_save (include/attune/nlu.h).
 *
 * Without a model argument it prints its usage and exits 77, which ctest
 * (that runs every example without arguments) counts as skipped. */
#include <stdio.h>
#include <string.h>

#include <attune/dataset.h> /* vocabularies: at_vocab_str */
#include <attune/nlu.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.onnx < sentences.txt\n", argv[0]);
        return 77;
    }
    at_err err;
    at_nlu_model *m;
    if (at_nlu_load(&m, argv[1], &err) != AT_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], err.msg);
        return 1;
    }
    const at_nlu_vocab *v = at_nlu_model_vocab(m);
    char line[4096];
    int rc = 0;
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[strspn(line, " \t")]) continue; /* blank line */
        at_nlu_pred p;
        if (at_nlu_predict_text(m, line, &p, &err) != AT_OK) {
            fprintf(stderr, "'%s': %s\n", line, err.msg);
            rc = 1;
            continue;
        }
        printf("%s\n  intent %s (%.2f)\n  slots ", line, at_vocab_str(v->intents, p.intent),
               p.intent_prob);
        for (int64_t t = 0; t < p.n; t++) printf(" %s", at_vocab_str(v->slots, p.slots[t]));
        printf("\n");
        at_nlu_pred_free(&p);
    }
    at_nlu_model_free(m);
    return rc;
}
