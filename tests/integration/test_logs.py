"""The classic three logs under <data_dir>/logs: the queue id from the 250
reply tells the story in receiver.log and delivery.log; POP3 sessions go
to retrieval.log."""

from __future__ import annotations

from support import DOMAIN, pop3_retr, simple_message, uniq, wait_until


def test_queue_id_in_receiver_and_delivery_logs(server):
    user, _ = server.add_user()
    token = uniq("log-")
    qid = server.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], simple_message(token, to=f"{user}@{DOMAIN}"))
    server.wait_token(user, token.encode())
    receiver = server.wait_log("receiver", qid)
    delivery = server.wait_log("delivery", qid)
    rlines = [l for l in receiver.splitlines() if qid in l]
    assert any(f"sender@{DOMAIN}" in l or "127.0.0.1" in l for l in rlines), (
        f"receiver log should say from whom the message came: {rlines}"
    )
    # Lines reach the file in batches, moments after the event: wait for
    # the one naming the recipient rather than reading once.
    def recipient_line():
        return [l for l in server.log("delivery").splitlines() if qid in l and user in l] or None

    try:
        wait_until(recipient_line, 15, f"a delivery line for {qid} naming {user}", interval=0.1)
    except AssertionError as e:
        dlines = [l for l in delivery.splitlines() if qid in l]
        raise AssertionError(f"{e}\ndelivery log should name the recipient {user}: {dlines}") from None
    # Each service keeps to its own file.
    assert qid not in server.log("retrieval")


def test_pop3_session_in_retrieval_log(server):
    user, pw = server.add_user()
    token = uniq("rlog-")
    qid = server.send(f"sender@{DOMAIN}", [f"{user}@{DOMAIN}"], simple_message(token, to=f"{user}@{DOMAIN}"))
    server.wait_token(user, token.encode())
    p = server.pop3(user, pw)
    try:
        assert token.encode() in pop3_retr(p, 1)
    finally:
        p.quit()
    server.wait_log("retrieval", user)
    # Retrieval events carry the queue id of the message fetched.
    server.wait_log("retrieval", qid)
