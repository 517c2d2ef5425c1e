"""Membership (会员): editable tiers, memberships tied to a vehicle, and the points ledger (§4.13, §12.4)."""
