"""A short soak and fault run (``make soak`` runs the long one): nothing hangs, nothing is left behind."""

from tools.soak import Soak, format_report, requests_mix


def test_short_soak(model_repository, reference, tmp_path):
    report = Soak(15, 4, model_repository, tmp_path).run()
    print(format_report(report))
    assert report.hangs == 0
    assert report.balanced, "sent == successes + errors"
    assert report.wrong_answers == 0
    assert report.errors.get("StatusCode.INVALID_ARGUMENT", 0) > 0  # the bad requests were refused
    assert report.killed_clients == 1  # killed while waiting, after the server's statistics counted its request
    # the traffic goes on until the restarted server answers, however long the restart takes, and past that
    assert report.downtime_s is not None, "no request succeeded within RECOVERY_LIMIT_S of the stub's kill"
    assert report.successes_after_recovery > 0
    assert report.supervisor_status == 0
    assert report.stubs_seen >= 6 and report.shm_seen >= 6  # two servers: before and after the restart
    assert report.leftover_stubs == 0 and report.leftover_shm == 0
    # Every good reply had the detection count of its photo (else a wrong answer): those are Ultralytics' counts.
    # Greedy NMS keeps a box unless a higher-scored one suppresses it, so a higher threshold keeps those above it.
    want = reference["results"]["conf=0.25,iou=0.7"]
    expected = {
        r.label: sum(d["score"] >= (r.conf or 0.25) for d in want[r.name]["detections"])
        for r in requests_mix()
        if r.good
    }
    assert report.expected_detections == expected and report.successes > 0, report.expected_detections
