"""customer_svc: basic data (stores, staff, customers, vehicles, visits, membership) and logins."""
