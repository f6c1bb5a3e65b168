// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {LeaseEscrow} from "../contracts/src/LeaseEscrow.sol";
import {ProviderRegistry} from "../contracts/src/ProviderRegistry.sol";
import {TestToken} from "../contracts/src/mocks/TestToken.sol";
import {vm} from "../contracts/test/utils/Vm.sol";

/// @title Deploy
/// @notice Deploys ProviderRegistry and LeaseEscrow to any chain and writes
/// `deployments/<chainId>.json`. On local chains (31337, 1337) it also deploys a TestToken with
/// permit and allowlists it.
/// @dev Every setting comes from the environment:
///   DEPLOYER_KEY        private key that deploys and owns both contracts (required)
///   BERTH_ARBITER       dispute arbiter (default: the deployer)
///   BERTH_PAYMENT_TOKEN allowlisted payment token (required off local chains)
///   BERTH_STAKE_TOKEN   token providers stake (default: the payment token)
///   BERTH_MIN_STAKE     minimum provider stake in base units (default 0)
///   BERTH_UNBONDING_DELAY, BERTH_ACCEPT_TIMEOUT, BERTH_CHALLENGE_WINDOW,
///   BERTH_FINAL_REPORT_WINDOW, BERTH_MIN_RUNWAY, BERTH_GRACE_PERIOD,
///   BERTH_MIN_OPEN_RUNWAY  seconds (defaults below; grace half the minimum runway, opening
///   runway twice it)
contract Deploy {
    bool public constant IS_SCRIPT = true;

    struct Settings {
        uint256 deployerKey;
        address deployer;
        address arbiter;
        address paymentToken;
        address stakeToken;
        uint256 minStake;
        uint256 unbondingDelay;
        uint256 acceptTimeout;
        uint256 challengeWindow;
        uint256 finalReportWindow;
        uint256 minRunway;
        uint256 gracePeriod;
        uint256 minOpenRunway;
    }

    function run() external returns (ProviderRegistry registry, LeaseEscrow escrow, address paymentToken) {
        Settings memory s = _settings();
        uint256 startBlock = block.number;
        vm.startBroadcast(s.deployerKey);
        if (s.paymentToken == address(0)) {
            require(_isLocal(), "BERTH_PAYMENT_TOKEN is required off local chains");
            s.paymentToken = address(new TestToken("Berth Test USD", "tUSD", 6));
        }
        if (s.stakeToken == address(0)) s.stakeToken = s.paymentToken;
        registry = new ProviderRegistry(s.deployer, IERC20(s.stakeToken), s.minStake, s.unbondingDelay);
        escrow = new LeaseEscrow(
            s.deployer,
            registry,
            s.arbiter,
            [
                s.acceptTimeout,
                s.challengeWindow,
                s.finalReportWindow,
                s.minRunway,
                s.gracePeriod,
                s.minOpenRunway
            ]
        );
        registry.setEscrow(address(escrow));
        registry.setPaymentToken(s.paymentToken, true);
        vm.stopBroadcast();
        _write(s, address(registry), address(escrow), startBlock);
        return (registry, escrow, s.paymentToken);
    }

    function _settings() private view returns (Settings memory s) {
        s.deployerKey = vm.envOr("DEPLOYER_KEY", uint256(0));
        require(s.deployerKey != 0, "DEPLOYER_KEY is required");
        s.deployer = vm.addr(s.deployerKey);
        s.arbiter = vm.envOr("BERTH_ARBITER", s.deployer);
        s.paymentToken = vm.envOr("BERTH_PAYMENT_TOKEN", address(0));
        s.stakeToken = vm.envOr("BERTH_STAKE_TOKEN", address(0));
        s.minStake = vm.envOr("BERTH_MIN_STAKE", uint256(0));
        s.unbondingDelay = vm.envOr("BERTH_UNBONDING_DELAY", uint256(7 days));
        s.acceptTimeout = vm.envOr("BERTH_ACCEPT_TIMEOUT", uint256(15 minutes));
        s.challengeWindow = vm.envOr("BERTH_CHALLENGE_WINDOW", uint256(1 days));
        s.finalReportWindow = vm.envOr("BERTH_FINAL_REPORT_WINDOW", uint256(1 hours));
        s.minRunway = vm.envOr("BERTH_MIN_RUNWAY", uint256(1 hours));
        s.gracePeriod = vm.envOr("BERTH_GRACE_PERIOD", s.minRunway / 2);
        s.minOpenRunway = vm.envOr("BERTH_MIN_OPEN_RUNWAY", s.minRunway * 2);
    }

    function _isLocal() private view returns (bool) {
        return block.chainid == 31_337 || block.chainid == 1337;
    }

    function _write(Settings memory s, address registry, address escrow, uint256 startBlock) private {
        string memory k = "deployment";
        vm.serializeUint(k, "chainId", block.chainid);
        vm.serializeUint(k, "startBlock", startBlock);
        vm.serializeAddress(k, "providerRegistry", registry);
        vm.serializeAddress(k, "leaseEscrow", escrow);
        vm.serializeAddress(k, "paymentToken", s.paymentToken);
        vm.serializeAddress(k, "stakeToken", s.stakeToken);
        vm.serializeAddress(k, "arbiter", s.arbiter);
        vm.serializeUint(k, "acceptTimeout", s.acceptTimeout);
        vm.serializeUint(k, "challengeWindow", s.challengeWindow);
        vm.serializeUint(k, "finalReportWindow", s.finalReportWindow);
        vm.serializeUint(k, "minRunway", s.minRunway);
        vm.serializeUint(k, "gracePeriod", s.gracePeriod);
        vm.serializeUint(k, "minOpenRunway", s.minOpenRunway);
        string memory json = vm.serializeUint(k, "unbondingDelay", s.unbondingDelay);
        vm.writeJson(
            json, string.concat(vm.projectRoot(), "/deployments/", vm.toString(block.chainid), ".json")
        );
    }
}
