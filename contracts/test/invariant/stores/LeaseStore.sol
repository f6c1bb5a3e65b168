// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice Ghost accounting of the invariant campaign, kept apart from the handler that drives
/// the escrow: what each lease was paid in and out, the times the escrow does not store, and
/// flags that must stay false.
contract LeaseStore {
    uint256[] public leaseIds;

    mapping(uint256 leaseId => uint256) public deposited;
    mapping(uint256 leaseId => uint256) public charged;
    mapping(uint256 leaseId => uint256) public paidToProvider;
    mapping(uint256 leaseId => uint256) public withdrawn;
    mapping(uint256 leaseId => uint256) public openedAt;
    mapping(uint256 leaseId => uint256) public confirmedAt;
    mapping(uint256 leaseId => uint256) public earnedSeen;
    mapping(uint256 leaseId => uint256) public billedSeen;
    /// The last suspension: [idleFrom, idleUntil), idleUntil 0 while suspended.
    mapping(uint256 leaseId => uint256) public idleFrom;
    mapping(uint256 leaseId => uint256) public idleUntil;
    /// Whether the escrow still prices reports against that interval.
    mapping(uint256 leaseId => bool) public idleUnbilled;
    mapping(uint256 leaseId => uint256) public autoPulled;
    /// Charges the arbiter gave back to the lease's balance.
    mapping(uint256 leaseId => uint256) public returned;

    bool public timeWentBack;
    bool public earnedDecreased;
    bool public strangerGotFunds;
    bool public chargedBeforeConfirmation;
    bool public suspendedUnitsAccepted;
    bool public updateMovedMoney;
    bool public autoTopUpAboveCap;
    bool public autoTopUpAboveTrigger;
    bool public autoTopUpIntoOtherLease;

    mapping(bytes32 action => uint256) public calls;

    function leaseCount() external view returns (uint256) {
        return leaseIds.length;
    }

    function addLease(uint256 leaseId, uint256 deposit, uint256 time) external {
        leaseIds.push(leaseId);
        deposited[leaseId] = deposit;
        openedAt[leaseId] = time;
    }

    function addDeposit(uint256 leaseId, uint256 amount) external {
        deposited[leaseId] += amount;
    }

    function addCharge(uint256 leaseId, uint256 amount) external {
        charged[leaseId] += amount;
        if (amount > 0 && confirmedAt[leaseId] == 0) chargedBeforeConfirmation = true;
    }

    function addPaid(uint256 leaseId, uint256 amount) external {
        paidToProvider[leaseId] += amount;
    }

    function addWithdrawn(uint256 leaseId, uint256 amount) external {
        withdrawn[leaseId] += amount;
    }

    function addReturned(uint256 leaseId, uint256 amount) external {
        returned[leaseId] += amount;
    }

    function addAutoPulled(uint256 leaseId, uint256 amount) external {
        autoPulled[leaseId] += amount;
    }

    function setConfirmed(uint256 leaseId, uint256 time) external {
        confirmedAt[leaseId] = time;
    }

    function setSuspended(uint256 leaseId, uint256 time) external {
        (idleFrom[leaseId], idleUntil[leaseId], idleUnbilled[leaseId]) = (time, 0, true);
    }

    function setResumed(uint256 leaseId, uint256 time) external {
        idleUntil[leaseId] = time;
    }

    function setIdleBilled(uint256 leaseId) external {
        idleUnbilled[leaseId] = false;
    }

    function observe(uint256 leaseId, uint256 earned, uint256 billedUntil) external {
        if (earned < earnedSeen[leaseId]) earnedDecreased = true;
        earnedSeen[leaseId] = earned;
        if (billedUntil < billedSeen[leaseId]) timeWentBack = true;
        billedSeen[leaseId] = billedUntil;
    }

    function count(bytes32 action) external {
        ++calls[action];
    }

    function flagStrangerGotFunds() external {
        strangerGotFunds = true;
    }

    function flagSuspendedUnitsAccepted() external {
        suspendedUnitsAccepted = true;
    }

    function flagUpdateMovedMoney() external {
        updateMovedMoney = true;
    }

    function flagAutoTopUpAboveCap() external {
        autoTopUpAboveCap = true;
    }

    function flagAutoTopUpAboveTrigger() external {
        autoTopUpAboveTrigger = true;
    }

    function flagAutoTopUpIntoOtherLease() external {
        autoTopUpIntoOtherLease = true;
    }
}
