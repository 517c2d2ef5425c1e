"""survey_svc: the voice of the customer. Satisfaction surveys (templates, invitations, the public answer page,
scores), complaints from intake to closure, and the reports managers and OEMs read."""
