import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.KafkaFuture;

/**
 * What OttlaCompat and OttlaGroups share: the broker address ({@code bootstrap}), the
 * step runner ({@code RUN}), {@code newAdmin(clientId)}, mismatch bookkeeping and the exit
 * protocol the pytest drivers read (0 = all matched Kafka's behaviour, 1 = mismatches,
 * listed on stderr, 2 = a step failed outright), plus helpers for Admin futures. Both
 * programs extend this class so its static members are in scope unqualified.
 */
abstract class Harness {
    static final long CALL_TIMEOUT_S = 60;
    /** Synchronized: consumer threads record mismatches too. */
    static final List<String> MISMATCHES = Collections.synchronizedList(new ArrayList<>());
    /** The broker under test: the program's first argument, set by its main. */
    static String bootstrap;
    /** Makes this run's topic and group names unique. */
    static final String RUN = Long.toString(System.currentTimeMillis(), 36)
            + Integer.toString(new Random().nextInt(1 << 20), 36);

    static Admin newAdmin(String clientId) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, clientId);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 30_000);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 60_000);
        return Admin.create(p);
    }

    interface Body {
        void run() throws Exception;
    }

    /** Run the program's body and exit with the protocol above. */
    static void runAndExit(Body body) {
        long start = System.nanoTime();
        try {
            body.run();
        } catch (Throwable t) {
            System.out.flush();
            System.err.println("FAILED: " + t);
            t.printStackTrace();
            if (!MISMATCHES.isEmpty()) {
                System.err.println("mismatches before the failure:");
                for (String m : MISMATCHES) System.err.println("  - " + m);
            }
            System.err.flush();
            System.exit(2);
        }
        long ms = (System.nanoTime() - start) / 1_000_000;
        if (!MISMATCHES.isEmpty()) {
            System.out.flush();
            System.err.println(MISMATCHES.size() + " mismatch(es) against Kafka's behaviour:");
            for (String m : MISMATCHES) System.err.println("  - " + m);
            System.err.flush();
            System.exit(1);
        }
        info("OK (" + ms + " ms)");
        System.exit(0);
    }

    static void info(String s) {
        System.out.println(s);
        System.out.flush();
    }

    /** Records a mismatch and carries on. */
    static boolean check(boolean ok, String what) {
        if (!ok) {
            MISMATCHES.add(what);
            info("MISMATCH: " + what);
        }
        return ok;
    }

    static boolean checkEq(Object expected, Object actual, String what) {
        boolean ok = expected == null ? actual == null : expected.equals(actual);
        return check(ok, what + ": expected " + expected + ", got " + actual);
    }

    /** Aborts the run (exit 2): later steps depend on this one. */
    static void require(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static <T> T await(KafkaFuture<T> f, String what) throws InterruptedException {
        try {
            return f.get(CALL_TIMEOUT_S, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            throw new AssertionError(what + " failed: " + e.getCause(), e.getCause());
        } catch (java.util.concurrent.TimeoutException e) {
            throw new AssertionError(what + " did not complete within " + CALL_TIMEOUT_S + " s");
        }
    }

    /** Like await, but a failure is recorded as a mismatch and null is returned. */
    static <T> T awaitSoft(KafkaFuture<T> f, String what) throws InterruptedException {
        try {
            return f.get(CALL_TIMEOUT_S, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            check(false, what + " failed: " + e.getCause());
            return null;
        } catch (java.util.concurrent.TimeoutException e) {
            check(false, what + " did not complete within " + CALL_TIMEOUT_S + " s");
            return null;
        }
    }

    /** The exception a future failed with, or null if it succeeded. */
    static Throwable failureOf(KafkaFuture<?> f) throws InterruptedException {
        try {
            f.get(CALL_TIMEOUT_S, TimeUnit.SECONDS);
            return null;
        } catch (ExecutionException e) {
            return e.getCause();
        } catch (java.util.concurrent.TimeoutException e) {
            return e;
        }
    }

    static void expectFailure(KafkaFuture<?> f, Class<? extends Throwable> cls, String what)
            throws InterruptedException {
        Throwable t = failureOf(f);
        check(t != null && cls.isInstance(t),
                what + ": expected " + cls.getSimpleName() + ", got "
                        + (t == null ? "success" : t.getClass().getSimpleName() + ": " + t.getMessage()));
    }

    /** Polls cond every 100 ms; false when it did not hold within timeoutMs. */
    static boolean waitUntil(long timeoutMs, BooleanSupplier cond) throws InterruptedException {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) return false;
            Thread.sleep(100);
        }
        return true;
    }
}
