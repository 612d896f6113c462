-- Civil affairs bureau: marriage and divorce registrations.
-- Habits: the registration type as Chinese text ('结婚' / '离婚'), dates as SQL DATE,
-- '男方' (nf) and '女方' (nvf) columns, IDs typed by clerks (full-width digits,
-- trailing spaces, lowercase x happen), '无' when a party has no ID on file.

CREATE TABLE hy_djxx (                    -- 婚姻登记信息
    djid      bigint PRIMARY KEY,           -- 登记流水号
    djlx      varchar(4) NOT NULL,          -- 登记类型 结婚 / 离婚 / 补领
    nf_xm     varchar(50) NOT NULL,         -- 男方姓名
    nf_sfzh   varchar(24),                  -- 男方身份证号
    nf_csrq   date,                         -- 男方出生日期
    nvf_xm    varchar(50) NOT NULL,         -- 女方姓名
    nvf_sfzh  varchar(24),
    nvf_csrq  date,
    djrq      date NOT NULL,                -- 登记日期
    djjg      varchar(100),                 -- 登记机关
    zsbh      varchar(30),                  -- 证书编号 (结婚证字号)
    cjsj      timestamp NOT NULL DEFAULT localtimestamp(0)   -- 创建时间
);
ALTER TABLE hy_djxx REPLICA IDENTITY FULL;
