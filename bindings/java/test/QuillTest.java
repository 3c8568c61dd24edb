// The shared end-to-end cases through the Java binding (the same calls as
// bindings/cpp/test_quill.cpp), plus the binding's own rules (errors, callbacks, close, threads):
//   java -Dquill.jni.path=OUT/libquill_jni.so -cp OUT/classes:OUT/test-classes \
//       QuillTest MODEL EXPECTED TEXT
// EXPECTED is a text file of "name:id,id,..." lines (tokenize, greedy, beam0, beam1, sample,
// batch0, batch1). Prints "Java: all checks passed" and exits 0, or prints each failure and exits 1.

import dev.quill.Generation;
import dev.quill.GenerateOptions;
import dev.quill.Hypothesis;
import dev.quill.Model;
import dev.quill.ModelInfo;
import dev.quill.QuillException;
import dev.quill.Session;
import dev.quill.SessionOptions;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

public class QuillTest {
    private static int failures = 0;
    private static final Map<String, String> expected = new HashMap<>();

    private static void fail(String what) {
        System.err.println("FAIL: " + what);
        failures++;
    }

    private static void check(boolean ok, String what) {
        if (!ok) fail(what);
    }

    private static String join(int[] ids) {
        StringBuilder s = new StringBuilder();
        for (int i = 0; i < ids.length; i++) s.append(i > 0 ? "," : "").append(Integer.toUnsignedString(ids[i]));
        return s.toString();
    }

    private static void expect(String name, int[] got) {
        String want = expected.get(name);
        if (want == null) {
            fail(name + ": not in the expected file");
        } else if (!join(got).equals(want)) {
            fail(name + ": got " + join(got) + ", expected " + want);
        }
    }

    private static int[] concat(List<int[]> parts) {
        return parts.stream().flatMapToInt(Arrays::stream).toArray();
    }

    /** Runs `body`, which must throw a QuillException with `status`. */
    private static void expectStatus(String what, int status, Runnable body) {
        try {
            body.run();
            fail(what + ": no exception");
        } catch (QuillException e) {
            check(e.getStatus() == status, what + ": status " + e.getStatus() + " (" + e.getMessage() + "), expected "
                    + status);
            check(e.getStatusName().equals(QuillException.statusName(status)), what + ": status name "
                    + e.getStatusName());
            check(!e.getDetail().isEmpty(), what + ": empty message");
        } catch (RuntimeException e) {
            fail(what + ": threw " + e + " instead of a QuillException");
        }
    }

    private static void expectIllegalState(String what, Runnable body) {
        try {
            body.run();
            fail(what + ": no IllegalStateException");
        } catch (IllegalStateException e) {
            // expected
        }
    }

    /**
     * A conversation with the shipped chat model (QUILL_CHAT_MODEL): a system message, then a turn
     * with the model's defaults, gives the C API's reply; an empty role, or a model without a
     * chat template ({@code plain}), is refused.
     */
    private static void chat(Model plain) {
        try (Model m = new Model(System.getenv("QUILL_CHAT_MODEL"), 1);
                Session s = m.newSession(new SessionOptions().maxBatch(1).beams(1))) {
            s.chatAdd("system", System.getenv("QUILL_CHAT_SYSTEM"));
            expect("chat", s.chat(System.getenv("QUILL_CHAT_MESSAGE")).best(0).ids);
            expectStatus("an empty role", QuillException.INVALID_ARGUMENT, () -> s.chatAdd("", "x"));
        }
        try (Session s = plain.newSession()) {
            expectStatus("chatAdd without a template", QuillException.INVALID_ARGUMENT,
                    () -> s.chatAdd("system", "x"));
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: QuillTest MODEL EXPECTED_FILE TEXT");
            System.exit(2);
        }
        for (String line : Files.readAllLines(Paths.get(args[1]), StandardCharsets.UTF_8)) {
            int c = line.indexOf(':');
            if (c >= 0) expected.put(line.substring(0, c), line.substring(c + 1));
        }
        final String text = args[2];
        try (Model m = new Model(args[0], 1)) {
            shared(m, text);
            streamingAndCallbacks(m, text);
            defaultsAndErrors(m, text);
            text(m);
            threads(m, text);
            closing(args[0], m, text);
            chat(m);
        } catch (Throwable t) {
            t.printStackTrace();
            fail("unexpected " + t);
        }
        if (failures > 0) {
            System.err.println("Java: " + failures + " check(s) failed");
            System.exit(1);
        }
        System.out.println("Java: all checks passed");
    }

    static SessionOptions sharedLimits() {
        return new SessionOptions().maxBatch(2).maxInputLen(64).maxNewTokens(32).beams(4);
    }

    /** The model's defaults with 24 new tokens and one beam. */
    static GenerateOptions base() {
        return new GenerateOptions().maxNewTokens(24).beams(1);
    }

    /** The cases of bindings/cpp/test_quill.cpp with the same options. */
    static void shared(Model m, String text) {
        ModelInfo info = m.info();
        check(info.arch == ModelInfo.ARCH_SEQ2SEQ && info.archName().equals("seq2seq"), "info.arch " + info);
        check(info.hasTokenizer, "info.hasTokenizer");
        check(info.vocabSize > 0 && info.eosIds.length >= 1 && info.decoderStartId >= 0, "info " + info);
        check(!info.isa.isEmpty(), "info.isa");
        int[] ids = m.tokenize(text);
        expect("tokenize", ids);
        try (Session s = m.newSession(sharedLimits())) {
            SessionOptions l = s.limits();
            check(l.getMaxBatch() == 2 && l.getMaxInputLen() == 64 && l.getMaxNewTokens() == 32 && l.getBeams() == 4
                    && l.getMaxMemory() > 0, "limits " + l);
            GenerateOptions o = base();
            expect("greedy", s.generateIds(o, ids).best(0).ids);
            Generation beam = s.generateIds(o.copy().beams(4).nBest(2), ids);
            check(beam.outputs.get(0).size() == 2, "beam: " + beam.outputs.get(0).size() + " hypotheses");
            expect("beam0", beam.outputs.get(0).get(0).ids);
            expect("beam1", beam.outputs.get(0).get(1).ids);
            check(beam.outputs.get(0).get(0).score >= beam.outputs.get(0).get(1).score, "beam scores in order");
            check(beam.outputs.get(0).get(0).text == null, "a generation from ids has no text");
            expect("sample", s.generateIds(o.copy().sample(true).seed(7).topK(50), ids).best(0).ids);
            int[] shortInput = Arrays.copyOf(ids, ids.length - 3);
            Generation batch = s.generateIds(o, ids, shortInput);
            check(batch.outputs.size() == 2 && !batch.stopped, "batch: " + batch.outputs.size() + " outputs");
            expect("batch0", batch.best(0).ids);
            expect("batch1", batch.best(1).ids);
            // The same through text: the same ids, with text.
            Generation g = s.generate(o, text);
            expect("greedy", g.best(0).ids);
            check(g.text() != null && g.text().equals(m.detokenize(g.best(0).ids)), "text " + g.text()
                    + " vs detokenize " + m.detokenize(g.best(0).ids));
            // min_new_tokens holds end-of-sequence back.
            Generation min = s.generateIds(new GenerateOptions().beams(1).maxNewTokens(30).minNewTokens(30), ids);
            check(min.best(0).ids.length == 30, "minNewTokens 30: " + min.best(0).ids.length + " tokens");
        }
    }

    static void streamingAndCallbacks(Model m, String text) {
        int[] ids = m.tokenize(text);
        GenerateOptions o = base();
        try (Session s = m.newSession(sharedLimits())) {
            // Streamed pieces add up to the result's text, streamed ids to its ids.
            StringBuilder streamed = new StringBuilder();
            List<int[]> streamedIds = new ArrayList<>();
            Generation r = s.stream(text, o, (input, v, t) -> {
                check(input == 0 && t != null, "stream callback args");
                streamed.append(t);
                streamedIds.add(v);
                return true;
            });
            expect("greedy", concat(streamedIds));
            check(streamed.toString().equals(r.text()), "streamed text '" + streamed + "' differs from '" + r.text()
                    + "'");
            check(!r.stopped, "a full stream is not stopped");
            // Ids streaming: text is null; batches report their input.
            List<int[]> perInput0 = new ArrayList<>();
            AtomicInteger calls1 = new AtomicInteger();
            Generation b = s.generateIds(o, (input, v, t) -> {
                check(t == null, "ids streaming has no text");
                if (input == 0) perInput0.add(v); else calls1.incrementAndGet();
                return true;
            }, ids, Arrays.copyOf(ids, ids.length - 3));
            expect("batch0", concat(perInput0));
            check(calls1.get() > 0 && b.outputs.size() == 2, "ids streaming of a batch");

            // Cancel from within the callback: stops with what was produced.
            AtomicInteger n = new AtomicInteger();
            Generation c = s.generateIds(o, (input, v, t) -> {
                if (n.addAndGet(v.length) >= 3) s.cancel();
                return true;
            }, ids);
            check(c.stopped, "cancel did not stop");
            check(n.get() <= 4 && c.best(0).ids.length <= 4, "cancelled after " + n.get() + " tokens, result has "
                    + c.best(0).ids.length);
            // The cancel was cleared by the generation it stopped.
            expect("greedy", s.generateIds(o, ids).best(0).ids);

            // Returning false stops too.
            AtomicInteger calls = new AtomicInteger();
            Generation f = s.stream(text, o, (input, v, t) -> calls.incrementAndGet() < 2);
            check(f.stopped && calls.get() == 2, "false stops: stopped " + f.stopped + " after " + calls.get());

            // A throwing callback stops the generation; its exception comes out, as it was thrown.
            RuntimeException thrown = new RuntimeException("from the callback");
            AtomicInteger throwCalls = new AtomicInteger();
            try {
                s.stream(text, o, (input, v, t) -> {
                    throwCalls.incrementAndGet();
                    throw thrown;
                });
                fail("the callback's exception was lost");
            } catch (RuntimeException e) {
                check(e == thrown && e.getMessage().equals("from the callback"), "rethrown: " + e);
            }
            check(throwCalls.get() == 1, "the generation went on after the callback threw: " + throwCalls.get());
            // Errors too (not only RuntimeExceptions), from ids streaming.
            try {
                s.generateIds(o, (input, v, t) -> {
                    throw new AssertionError("an error");
                }, ids);
                fail("the callback's error was lost");
            } catch (AssertionError e) {
                check(e.getMessage().equals("an error"), "rethrown error: " + e);
            }
            // Calling into the generating session from its callback is refused (cancel excepted).
            try {
                s.stream(text, o, (input, v, t) -> {
                    s.generate(o, "w1");
                    return true;
                });
                fail("a nested generate was not refused");
            } catch (IllegalStateException e) {
                // expected
            }
            try {
                s.stream(text, o, (input, v, t) -> {
                    s.close();
                    return true;
                });
                fail("close from the callback was not refused");
            } catch (IllegalStateException e) {
                // expected
            }
            // Still usable afterwards, and the cancel close() made first was cleared.
            expect("greedy", s.generate(o, text).best(0).ids);
            // Model calls from a callback are fine.
            Generation t2 = s.stream(text, o, (input, v, t) -> m.detokenize(v) != null);
            check(!t2.stopped, "model calls from a callback");
        }
    }

    static void defaultsAndErrors(Model m, String text) {
        // All defaults: a session that fits the model, its own decoding.
        try (Session d = m.newSession()) {
            Generation out = d.generate(text);
            check(out.outputs.size() == 1 && !out.outputs.get(0).isEmpty() && !out.text().isEmpty(),
                    "all-defaults generation gave no text");
            // Options with beams unset: the model's default lowered to the session, as with none.
            Generation some = d.generate(new GenerateOptions().maxNewTokens(5), text);
            check(some.best(0).ids.length <= 5, "maxNewTokens 5");
        }
        // Errors are exceptions with the status.
        expectStatus("open /nonexistent.quill", QuillException.IO, () -> new Model("/nonexistent.quill"));
        expectStatus("detokenize 123456", QuillException.INVALID_ARGUMENT, () -> m.detokenize(new int[] {123456}));
        try (Session s = m.newSession(sharedLimits())) {
            int[] ids = m.tokenize(text);
            expectStatus("3 inputs on a session of 2", QuillException.INVALID_ARGUMENT,
                    () -> s.generateIds(base(), ids, ids, ids));
            expectStatus("no input", QuillException.INVALID_ARGUMENT, () -> s.generate(base()));
            expectStatus("8 beams on a session of 4", QuillException.INVALID_ARGUMENT,
                    () -> s.generateIds(base().beams(8), ids));
            expectStatus("top_p 2", QuillException.INVALID_ARGUMENT, () -> s.generateIds(base().topP(2f), ids));
            expectStatus("an empty input", QuillException.INVALID_ARGUMENT, () -> s.generateIds(base(), new int[0]));
            // A failed call leaves the session usable.
            expect("greedy", s.generateIds(base(), ids).best(0).ids);
            // chat is for decoder-only models.
            try {
                s.chat("w1 w2");
                fail("chat on a seq2seq model did not fail");
            } catch (QuillException e) {
                System.out.println("chat on seq2seq: " + e.getMessage());
            }
            s.reset();
            expect("greedy", s.generateIds(base(), ids).best(0).ids);
        }
        expectStatus("a session of 0 inputs", QuillException.INVALID_ARGUMENT,
                () -> m.newSession(new SessionOptions().maxBatch(0)));
        expectStatus("a session over its memory budget", QuillException.OUT_OF_MEMORY,
                () -> m.newSession(new SessionOptions().maxMemory(1024)));
        try {
            new SessionOptions().beams(-1);
            fail("negative beams accepted");
        } catch (IllegalArgumentException e) {
            // expected
        }
        check(QuillException.statusName(2).equals("QUILL_ERR_IO"), "statusName(2)");
        check(QuillException.statusName(1234).equals("QUILL_ERR_UNKNOWN"), "statusName(1234)");
        check(dev.quill.Quill.abiVersion() == 1 && !dev.quill.Quill.version().isEmpty(), "versions");
    }

    /** Text crosses as standard UTF-8, both ways. */
    static void text(Model m) {
        int[] plain = m.tokenize("w5 w17", false);
        check(join(plain).equals("5,17"), "tokenize without specials: " + join(plain));
        check(m.detokenize(plain).equals("w5 w17"), "detokenize: " + m.detokenize(plain));
        check(m.detokenize(new int[0]).isEmpty(), "detokenize of nothing");
        // Characters outside the BMP and non-ASCII ones are accepted (unknown words to this model).
        m.tokenize("w5 \uD83D\uDE00 \u00E9\u4E2D w17");
        int[] target = m.tokenizeTarget("w5 w17", false);
        check(join(target).equals("5,17"), "tokenizeTarget: " + join(target));
        expectStatus("U+0000 in a text", QuillException.INVALID_ARGUMENT, () -> m.tokenize("w5\u0000w6"));
        expectStatus("an unpaired surrogate", QuillException.INVALID_ARGUMENT, () -> m.tokenize("w5 \uD83D w6"));
        try {
            m.tokenize(null);
            fail("null text accepted");
        } catch (NullPointerException e) {
            // expected
        }
        try (Session s = m.newSession()) {
            s.generate(new String[] {null});
            fail("a null text in the batch accepted");
        } catch (NullPointerException e) {
            // expected
        }
        // A long text: more ids than the first guess of the tokenize buffer would hold is fine.
        StringBuilder many = new StringBuilder();
        for (int i = 0; i < 3000; i++) many.append("w").append(2 + i % 997).append(' '); // w1 and w999 are special
        int[] long_ = m.tokenize(many.toString(), false);
        check(long_.length == 3000, "3000 words: " + long_.length + " ids");
        String back = m.detokenize(long_);
        check(back.equals(many.toString().trim()), "long detokenize");
    }

    /** One model, sessions on several threads at once; cancel from another thread. */
    static void threads(Model m, String text) throws Exception {
        int[] ids = m.tokenize(text);
        List<Thread> ts = new ArrayList<>();
        AtomicReference<String> bad = new AtomicReference<>();
        for (int t = 0; t < 4; t++) {
            Thread th = new Thread(() -> {
                try (Session s = m.newSession(sharedLimits())) {
                    for (int i = 0; i < 20; i++) {
                        String got = join(s.generateIds(base(), ids).best(0).ids);
                        if (!got.equals(expected.get("greedy"))) bad.set("thread greedy " + got);
                        m.tokenize(text);
                    }
                } catch (Throwable e) {
                    bad.set(e.toString());
                }
            });
            ts.add(th);
            th.start();
        }
        for (Thread th : ts) th.join();
        check(bad.get() == null, "threads: " + bad.get());

        // Cancel from another thread while the callback waits for it.
        try (Session s = m.newSession(sharedLimits())) {
            CountDownLatch started = new CountDownLatch(1);
            CountDownLatch cancelled = new CountDownLatch(1);
            Thread canceller = new Thread(() -> {
                try {
                    started.await();
                    s.cancel();
                    cancelled.countDown();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            });
            canceller.start();
            Generation g = s.generateIds(base(), (input, v, t) -> {
                started.countDown();
                try {
                    return cancelled.await(10, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    throw new RuntimeException(e);
                }
            }, ids);
            canceller.join();
            check(g.stopped && g.best(0).ids.length <= 2, "cancel from another thread: stopped " + g.stopped + ", "
                    + g.best(0).ids.length + " ids");
        }

        // close() from another thread during a generation: cancels it, waits for it, then frees.
        Session s = m.newSession(sharedLimits());
        CountDownLatch started = new CountDownLatch(1);
        Thread closer = new Thread(() -> {
            try {
                started.await();
                s.close();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
        closer.start();
        Generation g = s.generateIds(base(), (input, v, t) -> {
            if (started.getCount() > 0) {
                started.countDown();
                long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (closer.getState() != Thread.State.BLOCKED && System.nanoTime() < until) Thread.yield();
            }
            return true;
        }, ids);
        closer.join();
        check(g.stopped, "close from another thread did not cancel");
        expectIllegalState("generate on a closed session", () -> s.generateIds(base(), ids));
        s.cancel(); // a no-op once closed
        s.close(); // idempotent
    }

    /** Closed handles: idempotent close, IllegalStateException after; a session outlives its model. */
    static void closing(String path, Model shared, String text) {
        Model m = new Model(path, 1);
        Session s = m.newSession(sharedLimits());
        m.close();
        m.close(); // idempotent
        expectIllegalState("tokenize on a closed model", () -> m.tokenize("w1"));
        expectIllegalState("newSession on a closed model", () -> m.newSession());
        // The session outlives its model, with the model's decoding defaults.
        int[] ids = shared.tokenize(text);
        expect("greedy", s.generateIds(base(), ids).best(0).ids);
        expect("greedy", s.generate(base(), text).best(0).ids);
        s.close();
        expectIllegalState("reset on a closed session", s::reset);
    }
}

