// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice A minimal smart-contract wallet for tests: its owner makes it call other contracts,
/// and it accepts (ERC-1271) exactly the signatures its owner's key makes. A tenant that is a
/// contract signs its manifest uploads this way.
contract ContractWallet {
    /// @notice The key that acts and signs for the wallet.
    address public immutable owner;

    /// @notice Only the owner may make the wallet call.
    error ContractWallet_NotOwner(address caller);
    /// @notice The call the owner asked for reverted with `reason`.
    error ContractWallet_CallFailed(bytes reason);

    constructor(address owner_) {
        owner = owner_;
    }

    /// @notice Calls `target` with `data` as the wallet; returns what it returned.
    function execute(address target, bytes calldata data) external returns (bytes memory) {
        if (msg.sender != owner) revert ContractWallet_NotOwner(msg.sender);
        (bool ok, bytes memory out) = target.call(data);
        if (!ok) revert ContractWallet_CallFailed(out);
        return out;
    }

    /// @notice ERC-1271: the magic value when `signature` is the owner's over `hash`.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (signature.length != 65) return 0xffffffff;
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (v < 27) v += 27;
        address signer = ecrecover(hash, v, r, s);
        return signer != address(0) && signer == owner ? bytes4(0x1626ba7e) : bytes4(0xffffffff);
    }
}
