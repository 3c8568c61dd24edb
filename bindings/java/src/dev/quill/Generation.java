package dev.quill;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/** The outcome of a generation: per input, its hypotheses (best first). */
public final class Generation {
    /** {@code outputs.get(input).get(rank)}; unmodifiable. */
    public final List<List<Hypothesis>> outputs;
    /** True when the generation was stopped (cancelled, or by a stream callback) before its end. */
    public final boolean stopped;

    Generation(Hypothesis[][] outputs, boolean stopped) {
        List<List<Hypothesis>> all = new ArrayList<List<Hypothesis>>(outputs.length);
        for (Hypothesis[] hyps : outputs) {
            all.add(Collections.unmodifiableList(Arrays.asList(hyps)));
        }
        this.outputs = Collections.unmodifiableList(all);
        this.stopped = stopped;
    }

    /** The best hypothesis of input {@code input}. */
    public Hypothesis best(int input) {
        return outputs.get(input).get(0);
    }

    /** The text of the first input's best hypothesis (null for a generation from ids). */
    public String text() {
        return best(0).text;
    }

    @Override
    public String toString() {
        return "Generation{outputs=" + outputs + ", stopped=" + stopped + "}";
    }
}
