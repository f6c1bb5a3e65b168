//! The ERC-20 a provider is paid in: its precision for amounts, the payer's balance, the
//! allowance, and EIP-2612 permits so a lease opens in one transaction.

use alloy::{
    primitives::{Address, B256, U256},
    signers::SignerSync,
    sol_types::{Eip712Domain, SolStruct},
};
use berth_bindings::TestToken::TestTokenInstance;
use eyre::Result;

use crate::{
    amounts,
    context::{Ctx, Wallet},
    failure::{self, Kind, fail},
};

alloy::sol! {
    /// EIP-2612's permit, as the token's domain signs it.
    #[derive(Debug)]
    struct Permit {
        address owner;
        address spender;
        uint256 value;
        uint256 nonce;
        uint256 deadline;
    }
}

/// A token and how to write its amounts.
#[derive(Debug, Clone)]
pub struct Token {
    /// Its address.
    pub address: Address,
    /// Its symbol.
    pub symbol: String,
    /// Its decimals.
    pub decimals: u8,
}

impl Token {
    /// Reads the token's symbol and decimals.
    pub async fn load(ctx: &Ctx, address: Address) -> Result<Self> {
        let t = TestTokenInstance::new(address, ctx.rpc.clone());
        let decimals = t
            .decimals()
            .call()
            .await
            .map_err(|e| failure::contract("token decimals", &e))?;
        let symbol = t.symbol().call().await.unwrap_or_else(|_| "tokens".into());
        Ok(Self {
            address,
            symbol,
            decimals,
        })
    }

    /// `amount` base units in words: "12.5 tUSD".
    pub fn show(&self, amount: U256) -> String {
        format!("{} {}", amounts::format(amount, self.decimals), self.symbol)
    }

    /// Parses an amount in token units.
    pub fn parse(&self, field: &str, text: &str) -> Result<U256> {
        amounts::parse(field, text, self.decimals)
    }

    /// Fails with [`Kind::Refused`] unless `owner` holds at least `amount`.
    pub async fn require_balance(&self, ctx: &Ctx, owner: Address, amount: U256) -> Result<()> {
        let t = TestTokenInstance::new(self.address, ctx.rpc.clone());
        let balance = t
            .balanceOf(owner)
            .call()
            .await
            .map_err(|e| failure::contract("token balanceOf", &e))?;
        if balance < amount {
            return Err(fail(
                Kind::Refused,
                format!(
                    "{owner} holds {}, needs {}",
                    self.show(balance),
                    self.show(amount)
                ),
            ));
        }
        Ok(())
    }

    /// Approves `spender` for `amount` unless the allowance already covers it.
    pub async fn ensure_allowance(&self, w: &Wallet, spender: Address, amount: U256) -> Result<()> {
        let t = TestTokenInstance::new(self.address, w.provider.clone());
        let allowance = t
            .allowance(w.address, spender)
            .call()
            .await
            .map_err(|e| failure::contract("token allowance", &e))?;
        if allowance < amount {
            w.send(t.approve(spender, amount), "approve", 20).await?;
        }
        Ok(())
    }

    /// A permit for `spender` to pull `value` until `deadline`: `(r, vs)` in EIP-2098 form.
    pub async fn permit(
        &self,
        ctx: &Ctx,
        w: &Wallet,
        spender: Address,
        value: U256,
        deadline: U256,
    ) -> Result<(B256, B256)> {
        let t = TestTokenInstance::new(self.address, ctx.rpc.clone());
        let d = t
            .eip712Domain()
            .call()
            .await
            .map_err(|e| failure::contract("token eip712Domain (no EIP-2612 permit?)", &e))?;
        let nonce = t
            .nonces(w.address)
            .call()
            .await
            .map_err(|e| failure::contract("token nonces", &e))?;
        let domain = Eip712Domain::new(
            Some(d.name.into()),
            Some(d.version.into()),
            Some(d.chainId),
            Some(d.verifyingContract),
            None,
        );
        let digest = Permit {
            owner: w.address,
            spender,
            value,
            nonce,
            deadline,
        }
        .eip712_signing_hash(&domain);
        let sig = w
            .signer
            .sign_hash_sync(&digest)
            .map_err(|e| fail(Kind::Internal, format!("signing the permit: {e}")))?;
        let compact = sig.as_erc2098();
        Ok((
            B256::from_slice(&compact[..32]),
            B256::from_slice(&compact[32..]),
        ))
    }
}
