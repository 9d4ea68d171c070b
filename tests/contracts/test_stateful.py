"""Stateful property test: random sequences of every action by 2 owners and 3 miners.

A Python model of Sonar predicts each action's outcome. An action the model calls valid must
succeed with exactly the predicted effects (rewards, vesting, clawbacks, credits, queue heads,
pools); one it calls invalid must revert; one whose outcome depends on which second the next block
gets (within `MARGIN` of a time boundary) is not sent. After every step, from the contract's own
views:

* ETH:   balance(Sonar) == Σ escrow + Σ forfeit pools + Σ pending × stake (ETH bounties)
                           + Σ vesting (rewards + stakes, every miner of the ETH bounties)
                           + Σ credits(ETH), the burn address's credits included
* token: balanceOf(Sonar) == the same over the token bounties and token credits
* per bounty: paid ≤ deposited, where deposited = reward + forfeited stakes, and
  paid + escrow + pool + burned + refunded == deposited (nothing created or lost; burned counts
  clawed-back rewards, burned at once, and the pool burned at close), and
  paid == Σ vesting rewards + rewards released (a clawback takes from both paid and vesting)
* the contract's bounty fields, vesting (with its releasableAfter) and credits equal the model's.

`make test` runs a short profile (brownie-config.yaml: 25 examples of up to 20 steps). `make fuzz`
sets SONAR_FUZZ_STEPS=10000: the machine is run again and again (fresh examples each time) until
at least that many steps have been executed, each followed by the invariant checks.
"""

import os

import brownie
from brownie import ZERO_ADDRESS, chain
from brownie.test import strategy
from hypothesis import Phase

from conftest import BURN, _Errors, digest_for, fast_balance, fast_call

# No `target` phase: hypothesis's Pareto optimisation re-runs whole sequences (each a few dozen
# transactions) for no gain here; failures are still shrunk.
SETTINGS = {"phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink]}
FUZZ_STEPS = int(os.environ.get("SONAR_FUZZ_STEPS", "0"))
FUZZ_SETTINGS = {"max_examples": 100, "stateful_step_count": 50}
MARGIN = 15  # seconds: a tx lands in a block at most this long after the latest one
WINDOW_CHOICES = [600, 1800]
VALIDATION = b"\x01" * 32
BPS, CAP_BPS, MAX_ROUND_HERE = 10_000, 3500, 4
OPEN, COMPLETED, CLOSED = 1, 2, 3
SUBMITTED, ACCEPTED, REJECTED, RECLAIMED = 1, 2, 3, 4
STEPS = {"n": 0}
DONE = {}  # successful transactions per action, reported by `make fuzz`
E = _Errors()  # E.SonarStillVesting(1, t) -> the revert message brownie decodes
# rule_settle's st_bits for one accepted verdict: count 1, kind 0, bits 16 and 24 keep the 1-in-16
# wrong total and invalid clawback off
SEED_BITS = (1 << 16) | (1 << 24)


def done(action):
    DONE[action] = DONE.get(action, 0) + 1


def latest():
    return chain[-1].timestamp


class Bounty:
    def __init__(self, bid, owner, token, reward, stake, deadline, window, initial, target, higher, auditable):
        self.bid, self.owner, self.token = bid, owner, token
        self.reward, self.stake, self.deadline, self.window = reward, stake, deadline, window
        self.initial, self.target, self.higher, self.auditable = initial, target, higher, auditable
        self.escrow, self.best, self.status = reward, initial, OPEN
        self.pool = self.paid = self.burned = self.refunded = self.forfeited = 0
        self.released = 0  # vesting rewards released to credits (part of `paid`)
        self.revealed = False
        self.subs = []  # dicts: miner, at (submit time), status (ISonar.SubmissionStatus)
        self.next_eval = self.pending = self.latest_version = 0

    def vesting_end(self):
        """Sonar._vestingEnd: 0 once Closed; else the deadline while Open, raised to the last
        submission's window end while anything is pending; 0 otherwise."""
        if self.status == CLOSED:
            return 0
        end = self.deadline if self.status == OPEN else 0
        if self.pending:
            end = max(end, self.subs[-1]["at"] + self.window)
        return end

    def improves(self, score):
        return score > self.best if self.higher else score < self.best

    def round_reward(self, score):
        if self.higher:
            improvement, span, reached = score - self.best, self.target - self.initial, score >= self.target
        else:
            improvement, span, reached = self.best - score, self.initial - self.target, score <= self.target
        if reached:
            return self.escrow, True
        return min(self.reward * improvement // span, self.escrow), False


def verdicts_from(bits, count):
    """`count` verdicts drawn from the bits of a random word: accept / forfeit / refund, a forfeit
    with clawback half the time, and the accepted ones share 10000 bps (or, 1 time in 16, a wrong
    total; and 1 time in 16 a clawback on an accepted or refunded verdict, which is invalid)."""
    kinds = [(bits >> (2 * i)) & 3 for i in range(count)]
    accepted = [i for i, k in enumerate(kinds) if k in (0, 3)]
    verdicts = [(0, 4, False, bool((bits >> (16 + i)) & 1)) if k == 1 else (0, 2, True, False)
                for i, k in enumerate(kinds)]
    for j, i in enumerate(accepted):
        share = BPS // len(accepted) + (BPS % len(accepted) if j == 0 else 0)
        verdicts[i] = (share, 0, False, False)
    if accepted and (bits >> 12) % 16 == 0:
        verdicts[accepted[0]] = (verdicts[accepted[0]][0] - 1, 0, False, False)
    others = [i for i, v in enumerate(verdicts) if v[0] > 0 or v[2]]
    if others and (bits >> 20) % 16 == 0:
        i = others[(bits >> 24) % len(others)]
        verdicts[i] = verdicts[i][:3] + (True,)
    return verdicts


class StateMachine:
    st_owner = strategy("uint8", max_value=1)
    st_miner = strategy("uint8", max_value=2)
    st_pick = strategy("uint8")
    st_bits = strategy("uint32")
    st_erc20 = strategy("bool")
    st_higher = strategy("bool")
    st_flag = strategy("bool")
    st_reward = strategy("uint256", min_value=1, max_value=10**18)
    st_stake_frac = strategy("uint8", min_value=1)
    st_span = strategy("uint32", min_value=1, max_value=10**6)
    st_frac = strategy("uint8")
    st_offset = strategy("uint16", min_value=60, max_value=3000)
    st_seconds = strategy("uint16", min_value=1, max_value=700)

    def __init__(cls, sonar, token, owners, miners):
        cls.sonar, cls.token = sonar, token
        cls.owners, cls.miners = owners, miners
        cls.accounts = owners + miners

    def setup(self):
        chain.mine()  # fresh block: the snapshot's block may be old by now
        self.bounties = []
        self.credits = {}  # (token address, account address) -> amount
        self.vesting = {}  # (bounty id, miner address) -> [rewards, stakes]
        self.n = 0

    # -- helpers -----------------------------------------------------------------------------------

    def _credit(self, token, account, amount):
        key = (token, str(account))
        self.credits[key] = self.credits.get(key, 0) + amount

    def _vest(self, b, miner):
        return self.vesting.setdefault((b.bid, str(miner)), [0, 0])

    def _pick_bounty(self, pick):
        return self.bounties[pick % len(self.bounties)] if self.bounties else None

    def _tkn(self, b):
        return ZERO_ADDRESS if b.token == ZERO_ADDRESS else self.token.address

    def _head(self, b):
        return b.subs[b.next_eval] if b.next_eval < len(b.subs) else None

    def _pick_settleable(self, pick):
        """Three times in four a bounty whose queue head can still be settled (so successful
        settles are common), otherwise any bounty (so invalid settles keep being tried)."""
        t = latest()
        ready = [b for b in self.bounties if b.status != CLOSED and self._head(b) is not None
                 and self._head(b)["status"] == SUBMITTED and t + MARGIN <= self._head(b)["at"] + b.window]
        if ready and pick % 4:
            return ready[(pick // 4) % len(ready)]
        return self._pick_bounty(pick)

    # -- rules -------------------------------------------------------------------------------------

    def initialize_bounties(self, st_reward, st_stake_frac, st_span, st_offset, st_flag):
        """Every sequence starts with an ETH bounty (owner 0) and an auditable token bounty (owner 1);
        half of them also with two updates of miner 0 in the ETH bounty, the first accepted, the
        second pending, so that releases and clawbacks that take something are common even in
        short sequences."""
        self.rule_post(0, False, st_reward, st_stake_frac, True, st_span, st_offset, 0, False)
        self.rule_post(1, True, st_reward, st_stake_frac, False, st_span, st_offset, 1, True)
        if st_flag:
            self.rule_submit(0, 0, 1)  # bounty 1, miner 0, base version 0
            self.rule_submit(0, 0, 1)
            # the only settleable bounty; one verdict (SEED_BITS is even), accepted; 3/4 of the span
            self.rule_settle(1, SEED_BITS, 150, False)

    def rule_post(self, st_owner, st_erc20, st_reward, st_stake_frac, st_higher, st_span, st_offset, st_pick, st_flag):
        owner = self.owners[st_owner]
        token = self.token.address if st_erc20 else ZERO_ADDRESS
        window = WINDOW_CHOICES[st_pick % 2]
        stake = max(1, st_reward * st_stake_frac // 1024)  # 0 < stake <= reward / 4
        if st_higher:
            initial, target = 500_000, 500_000 + st_span
        else:
            initial, target = 1_000_000 + st_span, 1_000_000
        deadline = latest() + MARGIN + st_offset
        params = (token, st_reward, stake, deadline, window, initial, target, st_higher, VALIDATION, b"\x02" * 32, 0, st_flag)
        tx = self.sonar.postBounty(params, {"from": owner, "value": 0 if st_erc20 else st_reward})
        bid = tx.events["BountyPosted"]["bountyId"]
        assert bid == len(self.bounties) + 1
        self.bounties.append(
            Bounty(bid, owner, token, st_reward, stake, deadline, window, initial, target, st_higher, st_flag)
        )

    def rule_submit(self, st_pick, st_miner, st_frac):
        b = self._pick_bounty(st_pick)
        if b is None:
            return
        miner = self.miners[st_miner]
        base = b.latest_version + 1 if st_frac % 16 == 0 else st_frac % (b.latest_version + 1)
        t = latest()
        self.n += 1
        value = b.stake if b.token == ZERO_ADDRESS else 0
        args = (b.bid, digest_for(self.n), 0x55, base, {"from": miner, "value": value})
        if b.status != OPEN or t > b.deadline or base > b.latest_version:
            with brownie.reverts():
                self.sonar.submit(*args)
            return
        if t + MARGIN > b.deadline:
            return  # might land either side of the deadline
        tx = self.sonar.submit(*args)
        assert tx.events["UpdateSubmitted"]["index"] == len(b.subs)
        b.subs.append({"miner": miner, "at": tx.timestamp, "status": SUBMITTED})
        done("submit")
        b.pending += 1

    def rule_settle(self, st_pick, st_bits, st_frac, st_flag):
        b = self._pick_settleable(st_pick)
        if b is None:
            return
        queued = len(b.subs) - b.next_eval
        count = 1 + st_bits % max(1, min(queued, MAX_ROUND_HERE))
        verdicts = verdicts_from(st_bits >> 4, count)
        if st_flag:
            # clawbacks that take something: a refund or forfeit of a miner with rewards vesting
            # becomes a forfeit with clawback (the accepted shares are untouched)
            for i, s in enumerate(b.subs[b.next_eval : b.next_eval + count]):
                if verdicts[i][0] == 0 and not verdicts[i][3] and self.vesting.get((b.bid, str(s["miner"])), [0])[0]:
                    verdicts[i] = (0, 9, False, True)
        span = abs(b.target - b.initial)
        step = span * st_frac // 200  # 0 (no improvement) .. 1.27 × span (past the target)
        score = b.best + step if b.higher else max(b.best - step, 0)
        model = (b"\x05" * 31) + bytes([st_frac])
        args = (b.bid, verdicts, score, model, 0x70, {"from": b.owner})
        head = self._head(b)
        t = latest()
        accepted = [v for v in verdicts if v[0] > 0]
        invalid = (
            b.status == CLOSED
            or head is None
            or count > queued
            or t > head["at"] + b.window
            or (accepted and (sum(v[0] for v in accepted) != BPS or not b.improves(score)))
            or any(v[3] and (v[0] > 0 or v[2]) for v in verdicts)
        )
        if invalid:
            with brownie.reverts():
                self.sonar.settle(*args)
            return
        if t + MARGIN > head["at"] + b.window:
            return  # might land either side of the end of the head's window
        items = b.subs[b.next_eval : b.next_eval + count]
        assert all(s["status"] == SUBMITTED for s in items)  # the head in its window: all of them

        forfeits = sum(1 for v in verdicts if v[0] == 0 and not v[2])
        pool = b.pool + forfeits * b.stake
        pot = cap = 0
        reached = False
        if accepted:
            r, reached = b.round_reward(score)
            pot = r + pool
            cap = 2**256 if reached and len(accepted) == 1 else b.reward * CAP_BPS // BPS
        tx = self.sonar.settle(*args)
        done("settle")
        tkn = self._tkn(b)
        rewards, clawed = [], []  # clawed: (index, miner, amount) of each clawback that took something
        for i, (v, s) in enumerate(zip(verdicts, items)):
            vest = self._vest(b, s["miner"])
            if v[0] > 0:
                amount = min(pot * v[0] // BPS, cap)
                rewards.append(amount)
                s["status"] = ACCEPTED
                vest[0] += amount
                vest[1] += b.stake
            else:
                s["status"] = REJECTED
                if v[2]:
                    self._credit(tkn, s["miner"], b.stake)
                elif v[3] and vest[0]:
                    clawed.append((b.next_eval + i, str(s["miner"]), vest[0]))
                    vest[0] = 0
        paid = sum(rewards)
        clawed_back = sum(c[2] for c in clawed)
        assert [e["reward"] for e in tx.events["UpdateAccepted"]] == rewards if rewards else "UpdateAccepted" not in tx.events
        got = [(e["index"], e["miner"], e["amount"]) for e in tx.events["RewardsClawedBack"]] \
            if "RewardsClawedBack" in tx.events else []
        assert got == clawed
        # each RewardsClawedBack comes right before the UpdateRejected of the same submission
        order = [(e.name, e["index"]) for e in tx.events if e.name in ("RewardsClawedBack", "UpdateRejected")]
        for j, (name, index) in enumerate(order):
            if name == "RewardsClawedBack":
                assert order[j + 1] == ("UpdateRejected", index)
        if clawed:
            done("clawback")
        assert tx.events["RoundSettled"]["paid"] == paid
        assert ("TargetReached" in tx.events) == (reached and b.status == OPEN)
        from_pool = min(paid, pool)
        b.forfeited += forfeits * b.stake
        b.pool = pool - from_pool
        b.escrow -= paid - from_pool
        b.paid += paid - clawed_back
        b.burned += clawed_back  # clawed-back rewards are burned at once
        self._credit(tkn, BURN, clawed_back)
        b.next_eval += count
        b.pending -= count
        if accepted:
            b.best = score
            b.latest_version += 1
            if reached and b.status == OPEN:
                b.status = COMPLETED

    def rule_reclaim(self, st_pick, st_frac):
        b = self._pick_bounty(st_pick)
        if b is None or not b.subs:
            return
        anyone = st_frac % 4 == 0
        candidates = [i for i, s in enumerate(b.subs) if anyone or s["status"] == SUBMITTED]
        if not candidates:
            return
        i = candidates[st_frac % len(candidates)]
        s = b.subs[i]
        t = latest()
        due = s["at"] + b.window
        if s["status"] != SUBMITTED or t + MARGIN <= due:
            with brownie.reverts():
                self.sonar.reclaimStake(b.bid, i, {"from": s["miner"]})
            return
        if t <= due:
            return  # might land either side of the due time
        self.sonar.reclaimStake(b.bid, i, {"from": s["miner"]})
        s["status"] = RECLAIMED
        done("reclaim")
        b.pending -= 1
        if b.next_eval == i:
            b.next_eval += 1
        self._credit(self._tkn(b), s["miner"], b.stake)

    def rule_skip(self, st_pick, st_miner):
        b = self._pick_bounty(st_pick)
        if b is None:
            return
        caller = self.miners[st_miner]
        head = self._head(b)
        t = latest()
        if head is not None and head["status"] == RECLAIMED:
            tx = self.sonar.skip(b.bid, {"from": caller})
            assert "StakeReclaimed" not in tx.events
            b.next_eval += 1
            return
        if head is None or t + MARGIN <= head["at"] + b.window:
            with brownie.reverts():
                self.sonar.skip(b.bid, {"from": caller})
            return
        if t <= head["at"] + b.window:
            return  # might land either side of the end of the window
        tx = self.sonar.skip(b.bid, {"from": caller})
        assert tx.events["StakeReclaimed"]["miner"] == head["miner"]
        done("skip")
        head["status"] = RECLAIMED
        b.next_eval += 1
        b.pending -= 1
        self._credit(self._tkn(b), head["miner"], b.stake)

    def rule_reveal_audit(self, st_pick, st_flag):
        b = self._pick_bounty(st_pick)
        if b is None:
            return
        digest = VALIDATION if st_flag else b"\x07" * 32
        if b.revealed or not st_flag:
            with brownie.reverts():
                self.sonar.revealAudit(b.bid, digest, 0x55, {"from": b.owner})
            return
        self.sonar.revealAudit(b.bid, digest, 0x55, {"from": b.owner})
        b.revealed = True
        done("revealAudit")

    def rule_close(self, st_pick):
        b = self._pick_bounty(st_pick)
        if b is None:
            return
        t = latest()
        early_ok = b.status == COMPLETED and b.pending == 0
        ends = [] if early_ok else [b.deadline]
        if b.pending:
            ends.append(b.subs[-1]["at"] + b.window)
        if b.status == CLOSED or (b.auditable and not b.revealed) or any(t + MARGIN <= e for e in ends):
            with brownie.reverts():
                self.sonar.close(b.bid, {"from": b.owner})
            return
        if not all(t > e for e in ends):
            return  # might land either side of the deadline or the last due time
        tx = self.sonar.close(b.bid, {"from": b.owner})
        ev = tx.events["BountyClosed"]
        assert (ev["paid"], ev["refunded"], ev["burned"]) == (b.paid, b.escrow, b.pool)
        self._credit(self._tkn(b), b.owner, b.escrow)
        self._credit(self._tkn(b), BURN, b.pool)
        b.refunded = b.escrow
        b.burned += b.pool
        b.escrow = b.pool = 0
        b.status = CLOSED
        done("close")

    def rule_release(self, st_pick, st_miner, st_frac):
        """Anyone releases a miner's vesting: three times in four a (bounty, miner) with something
        vesting, otherwise any bounty and any account (often nothing to release). One time in
        three the caller first waits until the bounty's vesting has ended."""
        if not self.bounties:
            return
        caller = self.accounts[st_frac % len(self.accounts)]
        vesting = [(b, m) for b in self.bounties for m in self.miners if sum(self.vesting.get((b.bid, str(m)), (0, 0)))]
        if vesting and st_pick % 4:
            b, miner = vesting[(st_pick // 4) % len(vesting)]
        else:
            b = self._pick_bounty(st_pick)
            miner = self.accounts[(st_miner + st_frac // 8) % len(self.accounts)]
        rewards, stakes = self.vesting.get((b.bid, str(miner)), (0, 0))
        until = b.vesting_end()
        t = latest()
        if st_frac % 3 == 0 and t <= until:
            chain.sleep(until - t + 1)
            chain.mine()
            t = latest()
        if t + MARGIN <= until:
            with brownie.reverts(E.SonarStillVesting(b.bid, until)):
                self.sonar.release(b.bid, miner, {"from": caller})
            return
        if t <= until:
            if rewards + stakes == 0:
                with brownie.reverts():  # SonarStillVesting or SonarNothingToRelease, by the second
                    self.sonar.release(b.bid, miner, {"from": caller})
            return  # might land either side of the end of the vesting
        if rewards + stakes == 0:
            with brownie.reverts(E.SonarNothingToRelease(b.bid, miner)):
                self.sonar.release(b.bid, miner, {"from": caller})
            return
        tx = self.sonar.release(b.bid, miner, {"from": caller})
        ev = tx.events["Released"]
        assert (ev["bountyId"], ev["miner"], ev["rewards"], ev["stakes"]) == (b.bid, miner, rewards, stakes)
        assert tx.return_value == rewards + stakes
        self.vesting[(b.bid, str(miner))] = [0, 0]
        self._credit(self._tkn(b), miner, rewards + stakes)
        b.released += rewards
        done("release")

    def rule_withdraw(self, st_pick, st_erc20):
        account = self.accounts[st_pick % len(self.accounts)]
        tkn = self.token.address if st_erc20 else ZERO_ADDRESS
        amount = self.credits.get((tkn, str(account)), 0)
        if amount == 0:
            with brownie.reverts():
                self.sonar.withdraw(tkn, {"from": account})
            return
        before = account.balance() if tkn == ZERO_ADDRESS else self.token.balanceOf(account)
        tx = self.sonar.withdraw(tkn, {"from": account})
        if tkn == ZERO_ADDRESS:
            assert account.balance() == before + amount - tx.gas_used * tx.gas_price
        else:
            assert self.token.balanceOf(account) == before + amount
        self.credits[(tkn, str(account))] = 0
        done("withdraw")

    def rule_sleep(self, st_seconds):
        # mostly short waits (queues fill and get settled in their windows), one in four long
        # enough to expire windows and deadlines
        chain.sleep(st_seconds if st_seconds % 4 == 0 else 1 + st_seconds % 60)
        chain.mine()

    # -- invariants --------------------------------------------------------------------------------

    def invariant_contract_holds_exactly_what_it_owes(self):
        STEPS["n"] += 1
        owed = {ZERO_ADDRESS: 0, self.token.address: 0}
        for b in self.bounties:
            onchain = fast_call(self.sonar.getBounty, b.bid)
            owed[self._tkn(b)] += onchain["escrow"] + onchain["forfeitPool"] + onchain["pending"] * onchain["stake"]
            # per bounty: nothing paid that was not deposited, nothing created or lost
            deposited = b.reward + b.forfeited
            assert onchain["paid"] <= deposited
            assert (
                onchain["paid"] + onchain["escrow"] + onchain["forfeitPool"] + onchain["burned"] + b.refunded
                == deposited
            )
            # and the model agrees with the contract
            assert (onchain["escrow"], onchain["forfeitPool"], onchain["paid"], onchain["burned"]) == (
                b.escrow, b.pool, b.paid, b.burned
            )
            assert (onchain["status"], onchain["pending"], onchain["nextEval"]) == (b.status, b.pending, b.next_eval)
            assert (onchain["bestScore"], onchain["latestVersion"]) == (b.best, b.latest_version)
            assert onchain["submissions"] == len(b.subs)
            # vesting: the model's, per miner, and what the bounty paid is vesting or released
            vesting_rewards = 0
            for account in self.accounts:
                rewards, stakes, after = fast_call(self.sonar.getVesting, b.bid, account)
                assert [rewards, stakes] == self.vesting.get((b.bid, str(account)), [0, 0])
                assert after == b.vesting_end()
                owed[self._tkn(b)] += rewards + stakes
                vesting_rewards += rewards
            assert onchain["paid"] == vesting_rewards + b.released
        for tkn in owed:
            for account in self.accounts + [BURN]:
                onchain = fast_call(self.sonar.credits, tkn, account)
                assert onchain == self.credits.get((tkn, str(account)), 0)
                owed[tkn] += onchain
        assert fast_balance(self.sonar) == owed[ZERO_ADDRESS]
        assert fast_call(self.token.balanceOf, self.sonar) == owed[self.token.address]


def test_random_action_sequences_keep_the_books_balanced(
    state_machine, sonar, token, owner, owner2, miner, miner2, miner3
):
    args = (StateMachine, sonar, token, [owner, owner2], [miner, miner2, miner3])
    STEPS["n"] = 0
    if not FUZZ_STEPS:
        state_machine(*args, settings=SETTINGS)
        assert STEPS["n"] > 0
        return
    runs = 0
    while STEPS["n"] < FUZZ_STEPS:
        if runs:
            chain.revert()  # to the snapshot the previous run took: its last example's state is left
        state_machine(*args, settings={**SETTINGS, **FUZZ_SETTINGS})
        runs += 1
        print(f"\nstateful fuzz: run {runs}: {STEPS['n']} steps checked so far")
    print(f"\nstateful fuzz: {STEPS['n']} steps checked in {runs} run(s); transactions that succeeded: {DONE}")
