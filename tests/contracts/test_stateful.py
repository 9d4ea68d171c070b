"""Stateful property test: random sequences of every action by 2 owners and 3 miners.

A Python model of Sonar predicts each action's outcome. An action the model calls valid must
succeed with exactly the predicted effects (rewards, credits, queue heads); one it calls invalid
must revert; one whose outcome depends on which second the next block gets (within `MARGIN` of a
time boundary) is not sent. After every step, from the contract's own views:

* ETH:   balance(Sonar) == Σ escrow + Σ pending × stake (ETH bounties) + Σ credits(ETH)
* token: balanceOf(Sonar) == the same over the token bounties and token credits
* per bounty: paid ≤ deposited, where deposited = reward + forfeited stakes (rejected, expired),
  and paid + escrow + refunded == deposited (nothing created or lost)
* the contract's bounty fields and credits equal the model's.
"""

import brownie
from brownie import ZERO_ADDRESS, chain
from brownie.test import strategy
from eth_abi import encode
from eth_utils import keccak
from hypothesis import Phase

from conftest import digest_for, fast_balance, fast_call, salt_for

# max_examples and stateful_step_count come from brownie-config.yaml (hypothesis: 25 and 20).
# No `target` phase: hypothesis's Pareto optimisation re-runs whole sequences (each a few dozen
# transactions) for no gain here; failures are still shrunk.
SETTINGS = {"phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink]}
MARGIN = 15  # seconds: a tx lands in a block at most this long after the latest one
WINDOW_CHOICES = [120, 600]


def latest():
    return chain[-1].timestamp


def commitment(bid, miner, n):
    """ISonar.commitmentOf, in Python (test_commit_reveal checks the two agree)."""
    return keccak(
        encode(
            ["uint256", "address", "bytes32", "uint16", "uint32", "bytes32"],
            [bid, miner.address, digest_for(n), 0x55, 0, salt_for(n)],
        )
    )


class Bounty:
    def __init__(self, bid, owner, token, reward, stake, deadline, window, initial, target, higher):
        self.bid, self.owner, self.token = bid, owner, token
        self.reward, self.stake, self.deadline, self.window = reward, stake, deadline, window
        self.initial, self.target, self.higher = initial, target, higher
        self.escrow, self.best, self.status = reward, initial, 1  # Open
        self.paid = self.forfeited = self.refunded = 0
        self.subs = []  # dicts: miner, at (commit time), status (ISonar.SubmissionStatus), n (seed)
        self.next_eval = self.pending = self.last_due = 0

    def improves(self, score):
        return score > self.best if self.higher else score < self.best

    def reward_for(self, score):
        if self.higher:
            improvement, span, reached = score - self.best, self.target - self.initial, score >= self.target
        else:
            improvement, span, reached = self.best - score, self.initial - self.target, score <= self.target
        if reached:
            return self.escrow, True
        return min(self.reward * improvement // span, self.escrow), False


class StateMachine:
    st_owner = strategy("uint8", max_value=1)
    st_miner = strategy("uint8", max_value=2)
    st_pick = strategy("uint8")
    st_erc20 = strategy("bool")
    st_higher = strategy("bool")
    st_flag = strategy("bool")
    st_reward = strategy("uint256", min_value=1, max_value=10**18)
    st_stake = strategy("uint256", min_value=0, max_value=10**16)
    st_span = strategy("uint32", min_value=1, max_value=10**6)
    st_frac = strategy("uint8")
    st_offset = strategy("uint16", min_value=60, max_value=3000)
    st_seconds = strategy("uint16", min_value=1, max_value=1500)

    def __init__(cls, sonar, token, owners, miners):
        cls.sonar, cls.token = sonar, token
        cls.owners, cls.miners = owners, miners
        cls.accounts = owners + miners

    def setup(self):
        chain.mine()  # fresh block: the snapshot's block may be old by now
        self.bounties = []
        self.credits = {}  # (token address, account address) -> amount
        self.n = 0

    # -- helpers -----------------------------------------------------------------------------------

    def _credit(self, token, account, amount):
        key = (token, str(account))
        self.credits[key] = self.credits.get(key, 0) + amount

    def _pick_bounty(self, pick):
        return self.bounties[pick % len(self.bounties)] if self.bounties else None

    def _tkn(self, b):
        return ZERO_ADDRESS if b.token == ZERO_ADDRESS else self.token.address

    # -- rules -------------------------------------------------------------------------------------

    def initialize_bounties(self, st_reward, st_stake, st_span, st_offset):
        """Every sequence starts with an ETH bounty (owner 0) and a token bounty (owner 1)."""
        self.rule_post(0, False, st_reward, st_stake, True, st_span, st_offset, 0)
        self.rule_post(1, True, st_reward, st_stake, False, st_span, st_offset, 1)

    def rule_post(self, st_owner, st_erc20, st_reward, st_stake, st_higher, st_span, st_offset, st_pick):
        owner = self.owners[st_owner]
        token = self.token.address if st_erc20 else ZERO_ADDRESS
        window = WINDOW_CHOICES[st_pick % 2]
        if st_higher:
            initial, target = 500_000, 500_000 + st_span
        else:
            initial, target = 1_000_000 + st_span, 1_000_000
        deadline = latest() + MARGIN + st_offset
        params = (token, st_reward, st_stake, deadline, window, initial, target, st_higher, b"\x01" * 32, b"\x02" * 32, 0)
        tx = self.sonar.postBounty(params, {"from": owner, "value": 0 if st_erc20 else st_reward})
        bid = tx.events["BountyPosted"]["bountyId"]
        assert bid == len(self.bounties) + 1
        self.bounties.append(Bounty(bid, owner, token, st_reward, st_stake, deadline, window, initial, target, st_higher))

    def rule_commit(self, st_pick, st_miner, st_flag):
        b = self._pick_bounty(st_pick)
        if b is None:
            return
        miner = self.miners[st_miner]
        t = latest()
        self.n += 1
        n = self.n
        c = commitment(b.bid, miner, n)
        value = b.stake if b.token == ZERO_ADDRESS else 0
        if b.status != 1 or t > b.deadline:
            with brownie.reverts():
                self.sonar.commit(b.bid, c, {"from": miner, "value": value})
            return
        if t + MARGIN > b.deadline:
            return  # might land either side of the deadline
        tx = self.sonar.commit(b.bid, c, {"from": miner, "value": value})
        assert tx.events["UpdateCommitted"]["index"] == len(b.subs)
        b.subs.append({"miner": miner, "at": tx.timestamp, "status": 1, "n": n})
        b.pending += 1
        b.last_due = tx.timestamp + 2 * b.window
        if st_flag:  # reveal in the next block, as the `mine` client does
            self.sonar.reveal(b.bid, len(b.subs) - 1, digest_for(n), 0x55, 0, salt_for(n), {"from": miner})
            b.subs[-1]["status"] = 2

    def _pick_sub(self, b, pick, status, anyone):
        """Index of a submission of `b`: mostly one in `status`, any one if `anyone`."""
        candidates = [i for i, s in enumerate(b.subs) if anyone or s["status"] == status]
        return candidates[pick % len(candidates)] if candidates else None

    def rule_reveal(self, st_pick, st_frac, st_flag):
        b = self._pick_bounty(st_pick)
        if b is None or not b.subs:
            return
        i = self._pick_sub(b, st_frac, 1, anyone=st_frac % 4 == 0)
        if i is None:
            return
        s = b.subs[i]
        t = latest()
        salt = salt_for(s["n"]) if st_flag or st_frac % 5 else salt_for(10**9)  # 1 in 10: wrong salt
        args = (b.bid, i, digest_for(s["n"]), 0x55, 0, salt)
        if s["status"] != 1 or t > s["at"] + b.window or salt != salt_for(s["n"]):
            with brownie.reverts():
                self.sonar.reveal(*args, {"from": s["miner"]})
            return
        if t + MARGIN > s["at"] + b.window:
            return
        self.sonar.reveal(*args, {"from": s["miner"]})
        s["status"] = 2

    def _head(self, b):
        return b.subs[b.next_eval] if b.next_eval < len(b.subs) else None

    def rule_accept(self, st_pick, st_frac):
        b = self._pick_bounty(st_pick)
        if b is None:
            return
        head = self._head(b)
        i = b.next_eval
        span = abs(b.target - b.initial)
        step = span * st_frac // 200  # 0 (no improvement) .. 1.27 × span (past the target)
        score = b.best + step if b.higher else max(b.best - step, 0)
        model = (b"\x05" * 31) + bytes([st_frac])
        if b.status == 3 or head is None or head["status"] != 2 or not b.improves(score):
            with brownie.reverts():
                self.sonar.accept(b.bid, i, score, model, 0, {"from": b.owner})
            return
        reward, reached = b.reward_for(score)
        tx = self.sonar.accept(b.bid, i, score, model, 0, {"from": b.owner})
        assert tx.events["UpdateAccepted"]["reward"] == reward
        assert ("TargetReached" in tx.events) == reached
        b.escrow -= reward
        b.paid += reward
        b.best = score
        b.next_eval += 1
        b.pending -= 1
        head["status"] = 3
        if reached:
            b.status = 2
        self._credit(self._tkn(b), head["miner"], reward + b.stake)

    def rule_reject(self, st_pick):
        b = self._pick_bounty(st_pick)
        if b is None:
            return
        head = self._head(b)
        i = b.next_eval
        if b.status == 3 or head is None or head["status"] != 2:
            with brownie.reverts():
                self.sonar.reject(b.bid, i, 0, 2, {"from": b.owner})
            return
        self.sonar.reject(b.bid, i, 0, 2, {"from": b.owner})
        b.escrow += b.stake
        b.forfeited += b.stake
        b.next_eval += 1
        b.pending -= 1
        head["status"] = 4

    def rule_reclaim(self, st_pick, st_frac):
        b = self._pick_bounty(st_pick)
        if b is None or not b.subs:
            return
        i = self._pick_sub(b, st_frac, 2, anyone=st_frac % 4 == 0)
        if i is None:
            return
        s = b.subs[i]
        t = latest()
        due = s["at"] + 2 * b.window
        if s["status"] != 2 or t + MARGIN <= due:
            with brownie.reverts():
                self.sonar.reclaimStake(b.bid, i, {"from": s["miner"]})
            return
        if t <= due:
            return  # might land either side of the due time
        self.sonar.reclaimStake(b.bid, i, {"from": s["miner"]})
        s["status"] = 5
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
        if head is not None and head["status"] == 5:
            tx = self.sonar.skip(b.bid, {"from": caller})
            assert "Skipped" in tx.events
            b.next_eval += 1
            return
        if head is not None and head["status"] == 2:
            due = head["at"] + 2 * b.window
            if t + MARGIN <= due:
                with brownie.reverts():
                    self.sonar.skip(b.bid, {"from": caller})
                return
            if t <= due:
                return  # might land either side of the end of the evaluation window
            tx = self.sonar.skip(b.bid, {"from": caller})
            assert tx.events["StakeReclaimed"]["miner"] == head["miner"]
            head["status"] = 5
            b.next_eval += 1
            b.pending -= 1
            self._credit(self._tkn(b), head["miner"], b.stake)
            return
        if head is None or head["status"] != 1 or t + MARGIN <= head["at"] + b.window:
            with brownie.reverts():
                self.sonar.skip(b.bid, {"from": caller})
            return
        if t <= head["at"] + b.window:
            return  # might land either side of the end of the reveal window
        tx = self.sonar.skip(b.bid, {"from": caller})
        assert tx.events["UpdateExpired"]["stake"] == b.stake
        head["status"] = 6
        b.next_eval += 1
        b.pending -= 1
        b.forfeited += b.stake
        if b.status == 3:
            self._credit(self._tkn(b), b.owner, b.stake)
            b.refunded += b.stake
        else:
            b.escrow += b.stake

    def rule_close(self, st_pick):
        b = self._pick_bounty(st_pick)
        if b is None:
            return
        t = latest()
        ends = [b.deadline] if b.status == 1 else []
        if b.pending:
            ends.append(b.last_due)
        if b.status == 3 or any(t + MARGIN <= e for e in ends):
            with brownie.reverts():
                self.sonar.close(b.bid, {"from": b.owner})
            return
        if not all(t > e for e in ends):
            return  # might land either side of the deadline or the last due time
        tx = self.sonar.close(b.bid, {"from": b.owner})
        ev = tx.events["BountyClosed"]
        assert (ev["paid"], ev["refunded"]) == (b.paid, b.escrow)
        self._credit(self._tkn(b), b.owner, b.escrow)
        b.refunded += b.escrow
        b.escrow = 0
        b.status = 3

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

    def rule_sleep(self, st_seconds):
        chain.sleep(st_seconds)
        chain.mine()

    # -- invariants --------------------------------------------------------------------------------

    def invariant_contract_holds_exactly_what_it_owes(self):
        owed = {ZERO_ADDRESS: 0, self.token.address: 0}
        for b in self.bounties:
            onchain = fast_call(self.sonar.getBounty, b.bid)
            owed[self._tkn(b)] += onchain["escrow"] + onchain["pending"] * onchain["stake"]
            # per bounty: nothing paid that was not deposited, nothing created or lost
            deposited = b.reward + b.forfeited
            assert onchain["paid"] <= deposited
            assert onchain["paid"] + onchain["escrow"] + b.refunded == deposited
            # and the model agrees with the contract
            assert (onchain["escrow"], onchain["paid"], onchain["status"]) == (b.escrow, b.paid, b.status)
            assert (onchain["pending"], onchain["nextEval"], onchain["bestScore"]) == (b.pending, b.next_eval, b.best)
            assert onchain["submissions"] == len(b.subs)
        for tkn in owed:
            for account in self.accounts:
                onchain = fast_call(self.sonar.credits, tkn, account)
                assert onchain == self.credits.get((tkn, str(account)), 0)
                owed[tkn] += onchain
        assert fast_balance(self.sonar) == owed[ZERO_ADDRESS]
        assert fast_call(self.token.balanceOf, self.sonar) == owed[self.token.address]


def test_random_action_sequences_keep_the_books_balanced(
    state_machine, sonar, token, owner, owner2, miner, miner2, miner3
):
    state_machine(StateMachine, sonar, token, [owner, owner2], [miner, miner2, miner3], settings=SETTINGS)
