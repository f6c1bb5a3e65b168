// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Errors} from "../../../src/libraries/Errors.sol";
import {BerthFixture} from "../../utils/BerthFixture.sol";
import {vm} from "../../utils/Vm.sol";

abstract contract OpenLeaseWithPermit_Unit_Test is BerthFixture {
    function setUp() public override {
        super.setUp();
        vm.prank(tenant);
        token.approve(address(escrow), 0);
    }

    function test_WhenPermitValid_OpensInOneTransaction() public {
        uint256 deposit = depositFor(3 hours);
        (uint8 v, bytes32 r, bytes32 s) = _signPermit(deposit, block.timestamp + 1 hours);
        vm.prank(tenant);
        uint256 leaseId = escrow.openLeaseWithPermit(
            providerId,
            CPU,
            MEM,
            STO,
            MANIFEST_HASH,
            "",
            deposit,
            type(uint256).max,
            block.timestamp + 1 hours,
            r,
            _vs(v, s)
        );
        assertEq(escrow.getLease(leaseId).balance, deposit, "funded through permit");
    }

    function test_WhenPermitFrontRun_UsesTheAllowanceItSet() public {
        uint256 deposit = depositFor(3 hours);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = _signPermit(deposit, deadline);
        token.permit(tenant, address(escrow), deposit, deadline, v, r, s); // a front-runner uses it
        vm.prank(tenant);
        uint256 leaseId = escrow.openLeaseWithPermit(
            providerId, CPU, MEM, STO, MANIFEST_HASH, "", deposit, type(uint256).max, deadline, r, _vs(v, s)
        );
        assertEq(escrow.getLease(leaseId).balance, deposit, "allowance from the front-run permit used");
    }

    function test_RevertWhen_PermitBadAndNoAllowance() public {
        uint256 deposit = depositFor(3 hours);
        vm.prank(tenant);
        vm.expectRevert(
            abi.encodeWithSelector(
                Errors.LeaseEscrow_InsufficientAllowance.selector, address(token), 0, deposit
            )
        );
        escrow.openLeaseWithPermit(
            providerId, CPU, MEM, STO, MANIFEST_HASH, "", deposit, type(uint256).max, block.timestamp, 0, 0
        );
    }

    function test_RevertGiven_UnknownProvider() public {
        vm.prank(tenant);
        vm.expectRevert(abi.encodeWithSelector(Errors.LeaseEscrow_UnknownProvider.selector, 99));
        escrow.openLeaseWithPermit(
            99, CPU, MEM, STO, MANIFEST_HASH, "", 1, type(uint256).max, block.timestamp, 0, 0
        );
    }

    /// @dev EIP-2098 compact form: v in the top bit of s.
    function _vs(uint8 v, bytes32 s) private pure returns (bytes32) {
        return bytes32((uint256(v - 27) << 255) | uint256(s));
    }

    function _signPermit(uint256 value, uint256 deadline) private view returns (uint8, bytes32, bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256(
                    "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
                ),
                tenant,
                address(escrow),
                value,
                token.nonces(tenant),
                deadline
            )
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash));
        return vm.sign(tenantKey, digest);
    }
}

contract OpenLeaseWithPermit6_Unit_Test is OpenLeaseWithPermit_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 6;
    }
}

contract OpenLeaseWithPermit18_Unit_Test is OpenLeaseWithPermit_Unit_Test {
    function decimals() internal pure override returns (uint8) {
        return 18;
    }
}
